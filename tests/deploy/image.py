"""Builds deploy/Dockerfile with podman on a base made from Debian packages (deploy/build-base.sh).

``python3 -m tests.deploy.image DIR`` builds and writes ``DIR/log``, then ``DIR/status`` (the exit
status) last: .ci/run starts it in the background at its beginning so the image is ready by the
time tests/deploy/test_image.py runs, which waits for ``status``. The build context is a copy of
the files git knows (tracked or not ignored), taken before anything else runs, so files that later
steps write (stubs, caches) do not race with the build.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Only the standard library: .ci/run starts this before it installs the Python dependencies.
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENGINE = "podman"
BASE_IMAGE = "localhost/maos-base:bookworm"
IMAGE = "localhost/maos:test"
#: Packages build and run need (Debian): the engine, runc (works where crun refuses: cgroup v1 with
#: a v2 hierarchy beside it), and debootstrap for the base.
PACKAGES = ("podman", "runc", "debootstrap")
#: The base's downloaded packages, kept between runs (debootstrap --cache-dir).
CACHE = Path(tempfile.gettempdir()) / "maos-debootstrap-cache"


def missing_tools() -> list[str]:
    """What this machine lacks to build and run the image (commands, root)."""
    missing = [tool for tool in PACKAGES if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root (debootstrap)")
    return missing


def engine_options() -> list[str]:
    """Options of ``podman build`` and ``podman run`` that work on machines without
    CAP_SYS_RESOURCE or with hybrid cgroups: Debian's runc, and resource limits no higher than
    this process has (podman asks for more by default, which only CAP_SYS_RESOURCE may set)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nofile = 65536 if nofile == resource.RLIM_INFINITY else min(nofile, 65536)
    nproc = 16384 if nproc == resource.RLIM_INFINITY else min(nproc, 16384)
    return [
        "--runtime",
        "runc",
        "--ulimit",
        f"nofile={nofile}:{nofile}",
        "--ulimit",
        f"nproc={nproc}:{nproc}",
    ]


def copy_context(target: Path) -> None:
    """The files git knows of (tracked, or untracked and not ignored) as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if source.is_file() and not source.is_symlink():
            destination = target / os.fsdecode(name)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def _run(command: list[str], log: Path) -> None:
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
        out.write(f"({done.returncode}, {time.monotonic() - started:.1f}s)\n")
    if done.returncode:
        raise subprocess.CalledProcessError(done.returncode, command)


def build(out: Path, context: Path) -> int:
    """Build the base (unless present) and the image from ``context``; log to ``out/log``."""
    log = out / "log"
    try:
        _run([str(DEPLOY / "build-base.sh"), "--tag", BASE_IMAGE, "--cache-dir", str(CACHE)], log)
        _run(
            [
                ENGINE,
                "build",
                *engine_options(),
                "--format",
                "docker",  # keeps the HEALTHCHECK (the OCI format has none)
                "--network",
                "host",
                "--build-arg",
                f"BASE_IMAGE={BASE_IMAGE}",
                "--file",
                str(context / "deploy" / "Dockerfile"),
                "--tag",
                IMAGE,
                str(context),
            ],
            log,
        )
        # The previous builds' images and layers, now untagged: disk would grow with every run.
        _run([ENGINE, "image", "prune", "--force"], log)
    except (subprocess.CalledProcessError, OSError) as error:
        with log.open("a") as out:
            out.write(f"failed: {error}\n")
        return 1
    return 0


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    (out / "status").unlink(missing_ok=True)
    (out / "log").write_text("")
    status = 1
    try:
        with tempfile.TemporaryDirectory(prefix="maos-image-context.") as context:
            copy_context(Path(context))
            status = build(out, Path(context))
    except BaseException:  # noqa: BLE001 - whatever stopped the build, the waiting test reads why
        with (out / "log").open("a") as log:
            log.write(f"failed:\n{traceback.format_exc()}")
        raise
    finally:
        (out / "status.tmp").write_text(f"{status}\n")
        (out / "status.tmp").rename(out / "status")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
