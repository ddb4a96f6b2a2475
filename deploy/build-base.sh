#!/usr/bin/env bash
# Builds a base image for deploy/Dockerfile from Debian packages alone (no registry needed):
# debootstrap's minbase of a Debian suite with python3, python3-venv and ca-certificates, imported
# into podman (or docker) under one tag.
#
#   sudo deploy/build-base.sh                                # maos-base:bookworm, with podman
#   sudo deploy/build-base.sh --engine docker --tag my/base:12
#   podman build --format docker --build-arg BASE_IMAGE=localhost/maos-base:bookworm \
#     -f deploy/Dockerfile -t maos:0.1.0 .
#
# Needs root, debootstrap and the engine (Debian: apt-get install debootstrap podman). Debian's
# bookworm has Python 3.11, the oldest MAOS runs on.
#
# Certificates: the image trusts Debian's CA list plus the CA bundle given with --ca-bundle (by
# default the building machine's own bundle, /etc/ssl/certs/ca-certificates.crt, so that a TLS
# proxy the machine trusts also works for pip inside the build; --ca-bundle none: Debian's list
# only). pip in the image is pointed at that store (PIP_CERT).
set -Eeuo pipefail

usage() {
  sed -n '2,17s/^# \{0,1\}//p' "$0"
  echo
  echo "options: --tag TAG (maos-base:SUITE)  --suite SUITE (bookworm)  --mirror URL (http://deb.debian.org/debian)"
  echo "         --engine podman|docker (podman if installed)  --ca-bundle FILE|none  --cache-dir DIR  --force"
}

suite=bookworm
mirror=http://deb.debian.org/debian
tag=
engine=
ca_bundle=/etc/ssl/certs/ca-certificates.crt
cache_dir=
force=false
while (($#)); do
  case $1 in
    --tag) tag=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    --engine) engine=$2; shift 2 ;;
    --ca-bundle) ca_bundle=$2; shift 2 ;;
    --cache-dir) cache_dir=$2; shift 2 ;;
    --force) force=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build-base: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
tag=${tag:-maos-base:$suite}
if [ -z "$engine" ]; then
  if command -v podman >/dev/null; then engine=podman; else engine=docker; fi
fi
command -v "$engine" >/dev/null || { echo "build-base: $engine is not installed" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "build-base: debootstrap is not installed" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "build-base: debootstrap needs root" >&2; exit 1; }

if ! $force && "$engine" image inspect "$tag" >/dev/null 2>&1; then
  echo "build-base: $tag exists (--force builds it again)"
  exit 0
fi

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/maos-base.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
options=(--variant=minbase --include=python3,python3-venv,ca-certificates)
if [ -n "$cache_dir" ]; then
  mkdir -p "$cache_dir"
  options+=("--cache-dir=$(realpath "$cache_dir")")
fi
echo "build-base: debootstrap $suite from $mirror"
debootstrap "${options[@]}" "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -n 20 "$rootfs.log" >&2
  rm -f "$rootfs.log"
  exit 1
}
rm -f "$rootfs.log"

if [ "$ca_bundle" != none ]; then
  [ -f "$ca_bundle" ] || { echo "build-base: no CA bundle $ca_bundle (--ca-bundle none: Debian's only)" >&2; exit 1; }
  install -m 0644 "$ca_bundle" "$rootfs/usr/local/share/ca-certificates/build-machine.crt"
  # (its rehash step warns that a bundle is more than one certificate: the bundle is still added)
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  grep -q -- '-----BEGIN CERTIFICATE-----' "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
# What an image does not need: package lists and caches (apt-get update brings the lists back).
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb

python=$(chroot "$rootfs" python3 --version)
echo "build-base: importing into $engine as $tag"
quiet=()
[ "$engine" = podman ] && quiet=(--quiet)
tar --numeric-owner --xattrs -C "$rootfs" -c . | "$engine" import "${quiet[@]}" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["/bin/bash"]' \
  - "$tag" >/dev/null
echo "build-base: built $tag (Debian $suite, $python)"
