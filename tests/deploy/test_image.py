"""deploy/Dockerfile built with podman on a base from Debian packages, and run: a control plane
container that its HEALTHCHECK finds healthy, an agent container that joins it with a token, and a
task done by that agent.

Under .ci/run the image is built in the background from the start (tests/deploy/image.py, its
directory in ``CI_IMAGE_BUILD``); elsewhere this test builds it (minutes). Without podman, runc,
debootstrap or root it is skipped, and under CI=true it fails instead.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import image
from tests.deploy._common import IMAGE_UID, MAOS_HOME
from tests.harness.services import fail_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

#: How long a build started by .ci/run may still take when this test reaches it.
BUILD_WAIT_S = 1200.0


def poll(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Return once ``check()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.25)


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([image.ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=False)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{' '.join(done.args)}: {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    missing = image.missing_tools()
    if missing:
        fail_or_skip(f"cannot build the image here: no {', '.join(missing)}")
    started_by_ci = os.environ.get("CI_IMAGE_BUILD")
    if started_by_ci:
        out = Path(started_by_ci)
        builder = int(os.environ.get("CI_IMAGE_BUILD_PID", "0"))

        def ended() -> bool:  # its status written, or the builder gone without writing one
            return (out / "status").exists() or (builder > 0 and not _alive(builder))

        poll("the image build started by .ci/run", ended, BUILD_WAIT_S)
        assert (out / "status").exists(), "the image build ended without a status:\n" + _tail(out)
    else:
        out = tmp_path_factory.mktemp("image")
        image.main([str(out)])
    status = (out / "status").read_text().strip()
    log = (out / "log").read_text()
    assert status == "0", f"building the image failed:\n{log[-6000:]}"
    return image.IMAGE


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(out: Path) -> str:
    return "".join((out / name).read_text()[-3000:] for name in ("log", "stderr") if (out / name).exists())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:10]
    made = {
        "control_plane": f"maos-cp-{suffix}",
        "agent": f"maos-agent-{suffix}",
        "home": f"maos-home-{suffix}",
    }
    yield made
    podman("rm", "--force", "--volumes", "--time", "5", made["agent"], made["control_plane"])
    podman("volume", "rm", "--force", made["home"])


def container_options() -> list[str]:
    """As deploy/compose.yaml runs the image: read-only root, no capabilities; the host's network."""
    return [
        *image.engine_options(),
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]


def test_the_image_runs_a_control_plane_an_agent_and_a_task(built_image: str, names: dict[str, str]) -> None:
    port = free_port()
    cp = names["control_plane"]
    ok(
        podman(
            "run",
            "--detach",
            "--name",
            cp,
            *container_options(),
            "--health-interval",
            "disable",  # no timer (it needs systemd): `podman healthcheck run` runs the check below
            "--volume",
            f"{names['home']}:{MAOS_HOME}",
            "--env",
            f"MAOS_SERVER_ADDRESS=127.0.0.1:{port}",
            "--env",
            "MAOS_SERVER_HTTP_PORT=0",
            "--env",
            "MAOS_SERVER_DASHBOARD_PORT=0",
            "--env",
            "MAOS_SERVER_METRICS_PORT=0",
            built_image,  # its CMD: maos start --agents ""
        )
    )

    def healthy() -> bool:
        check = podman("healthcheck", "run", cp, timeout=30)
        if "no defined healthcheck" in check.stderr:
            pytest.fail(f"the image has no HEALTHCHECK: {check.stderr}")
        running = podman("container", "inspect", "--format", "{{.State.Running}}", cp).stdout.strip()
        if running != "true":
            pytest.fail(f"the control plane stopped:\n{podman('logs', cp).stderr[-3000:]}")
        return check.returncode == 0

    poll("the image's HEALTHCHECK (maos health --probe) passes", healthy, 90)
    assert ok(podman("exec", cp, "id", "-u")).strip() == str(IMAGE_UID)

    def maos(*args: str) -> Any:
        return json.loads(ok(podman("exec", cp, "maos", "-o", "json", *args)))

    ok(podman("exec", cp, "maos", "init"))  # the admin key the commands below use, in the volume
    token = maos("join-token", "create", "--uses", "1", "--ttl", "1h")["token"]
    ok(
        podman(
            "run",
            "--detach",
            "--name",
            names["agent"],
            *container_options(),
            "--no-healthcheck",
            "--env",
            f"MAOS_JOIN_TOKEN={token}",
            built_image,
            "maos-agent",
            "run",
            "--type",
            "echo",
            "--server",
            f"127.0.0.1:{port}",
        )
    )
    agents: list[dict[str, Any]] = []

    def joined() -> bool:
        agents[:] = maos("agent", "list").get("agents", [])
        return bool(agents)

    poll("the agent container joins", joined, 60)
    [agent] = agents
    assert agent["agent_type"] == "echo" and agent["pid"] == 1  # the first process of its container

    done = maos("task", "submit", "--wait", "Plan a launch: 1. audience 2. channels")
    assert done["status"] == "COMPLETED", done
    subtasks = done["result"]["subtasks"]
    assert subtasks and {s["agent"] for s in subtasks} == {agent["name"]}
    assert "audience" in done["result"]["output"] and "channels" in done["result"]["output"]
