"""The MAOS contract (protos/maos/v1) is the same for Node.js, buf and the Python stubs.

* Node.js (@grpc/proto-loader + @grpc/grpc-js) loads every .proto and sees the
  same services and methods as the committed Python descriptors;
* the committed stubs under agent_sdk/proto are what protos/generate.py
  produces now;
* ``buf lint`` and ``buf format`` pass.

Node.js tooling missing (``node``, ``npx`` or ``node_modules``): skipped, or
failed under CI (same policy as the service harness).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from tests.harness.services import fail_or_skip

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "protos" / "maos" / "v1"
STUB_PACKAGE = "agent_sdk.proto.maos.v1"
STUB_ROOT = ROOT / "agent_sdk" / "proto"
STUB_DIR = STUB_ROOT / "maos" / "v1"
LOAD_PROTOS = Path(__file__).resolve().parent / "load_protos.mjs"


def _require_node(*programs: str, packages: tuple[str, ...] = ()) -> None:
    """Fail or skip (policy of fail_or_skip) unless the Node.js tooling is there."""
    for program in ("node", *programs):
        if shutil.which(program) is None:
            fail_or_skip(f"{program} is not installed (install Node.js and npm)")
    for package in packages:
        if not (ROOT / "node_modules" / package / "package.json").is_file():
            fail_or_skip(f"node_modules/{package} is missing: run `npm ci` in {ROOT}")


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def _proto_files() -> list[str]:
    files = sorted(p.relative_to(ROOT / "protos").as_posix() for p in PROTO_DIR.glob("*.proto"))
    assert files, f"no .proto files under {PROTO_DIR}"
    return files


def _pb2_modules() -> list[ModuleType]:
    return [importlib.import_module(f"{STUB_PACKAGE}.{p.stem}") for p in sorted(STUB_DIR.glob("*_pb2.py"))]


def _message_count(messages) -> int:  # noqa: ANN001 - protobuf descriptor containers
    """Messages and nested messages, without map entries (protobuf.js has none)."""
    return sum(_message_count(m.nested_types) + (0 if m.GetOptions().map_entry else 1) for m in messages)


@pytest.mark.node
def test_node_and_python_see_the_same_contract() -> None:
    _require_node(packages=("@grpc/proto-loader", "@grpc/grpc-js"))
    result = _run(["node", str(LOAD_PROTOS)])
    assert result.returncode == 0, f"load_protos.mjs failed:\n{result.stderr}"
    node = json.loads(result.stdout)

    modules = _pb2_modules()
    files = _proto_files()
    assert node["files"] == files
    assert sorted(m.DESCRIPTOR.name for m in modules) == files

    python_services = {
        service.full_name: sorted(method.name for method in service.methods)
        for module in modules
        for service in module.DESCRIPTOR.services_by_name.values()
    }
    assert python_services, "the Python stubs declare no services"
    assert node["services"] == python_services
    assert node["messages"] == sum(
        _message_count(m.DESCRIPTOR.message_types_by_name.values()) for m in modules
    )


def test_committed_stubs_are_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import grpc_tools  # noqa: F401
    except ImportError:
        fail_or_skip('grpcio-tools is not installed: pip install -e ".[test]"')
    spec = importlib.util.spec_from_file_location("maos_protos_generate", ROOT / "protos" / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    monkeypatch.setattr(generate, "OUT_DIR", tmp_path)
    generate.generate()

    def texts(directory: Path) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted(directory.iterdir()) if p.is_file()}

    fresh = texts(tmp_path / "maos" / "v1")
    committed = texts(STUB_DIR)
    hint = "generated stubs are stale: run python protos/generate.py and commit"
    assert sorted(committed) == sorted(fresh), hint
    stale = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not stale, f"{hint} (differs: {', '.join(stale)})"
    for init in (Path("__init__.py"), Path("maos") / "__init__.py"):
        assert (STUB_ROOT / init).read_text() == (tmp_path / init).read_text(), f"{hint} ({init})"


@pytest.mark.node
@pytest.mark.parametrize(
    "command",
    [["buf", "lint"], ["buf", "format", "--diff", "--exit-code"]],
    ids=["lint", "format"],
)
def test_buf(command: list[str]) -> None:
    _require_node("npx", packages=("@bufbuild/buf",))
    result = _run(["npx", "--no-install", *command])
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
