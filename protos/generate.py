"""Regenerate the committed Python stubs of the MAOS protos.

Usage: ``python protos/generate.py`` (from anywhere). It runs grpcio-tools'
protoc on every ``protos/maos/v1/*.proto`` into a temporary directory,
rewrites the absolute ``from maos.v1 import`` lines into relative imports (so
the stubs live inside the ``agent_sdk.proto`` package without touching
``sys.path``), adds a DO NOT EDIT header and replaces
``agent_sdk/proto/maos/v1/``. CI runs it and fails if the result differs from
what is committed.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("maos") / "v1"
OUT_DIR = ROOT / "agent_sdk" / "proto"
HEADER = "# Generated from protos/ by protos/generate.py. DO NOT EDIT.\n"
_ABSOLUTE_IMPORT = re.compile(r"^from maos\.v1 import (\w+) as (\w+)$", re.MULTILINE)


def _well_known_includes() -> str:
    """The directory holding google/protobuf/*.proto shipped with grpcio-tools."""
    import grpc_tools

    return str(Path(grpc_tools.__file__).resolve().parent / "_proto")


def _rewrite(text: str) -> str:
    text = _ABSOLUTE_IMPORT.sub(r"from . import \1 as \2", text)
    return HEADER + text


def generate() -> list[Path]:
    """Generate the stubs and return the files written."""
    protos = sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PACKAGE_DIR}")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{_well_known_includes()}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(p.relative_to(PROTO_ROOT)) for p in protos),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        target = OUT_DIR / PACKAGE_DIR
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        written = []
        for src in sorted((Path(tmp) / PACKAGE_DIR).iterdir()):
            dst = target / src.name
            dst.write_text(_rewrite(src.read_text()))
            written.append(dst)
    for pkg in (OUT_DIR, OUT_DIR / "maos", OUT_DIR / PACKAGE_DIR):
        (pkg / "__init__.py").write_text(HEADER)
    return written


if __name__ == "__main__":
    files = generate()
    print(f"wrote {len(files)} files under {(OUT_DIR / PACKAGE_DIR).relative_to(ROOT)}", file=sys.stderr)
