"""deploy/compose.yaml against the Compose specification's schema, deploy/Dockerfile, and how they fit.

The Compose schema is the one check-jsonschema vendors (``vendor.compose-spec``). Commands parse
with the real CLIs, ``MAOS_*`` variables are settings or options, the control plane's settings pass
its start-up checks, and the image runs what the manifests expect (user, MAOS_HOME, ports, commands).
Building and running the image is tests/deploy/test_image.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.api.server import check_bind_address, check_metrics_address
from controlplane.config import OPTIONS, known_options, load_settings, parse_value
from tests.deploy._common import (
    DEPLOY,
    IMAGE_UID,
    MAOS_HOME,
    ROOT,
    VERSION,
    allowed_maos_env_vars,
    check_maos_command,
    parse_command,
)

COMPOSE = DEPLOY / "compose.yaml"
_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


def interpolate(value: str) -> str:
    """``${NAME:-default}`` as Compose reads it with NAME unset, ``${NAME:?...}`` as ``NAME``."""

    def one(match: re.Match[str]) -> str:
        text = match.group(0)
        if ":-" in text:
            return text.split(":-", 1)[1][:-1]
        return f"<{match.group(1)}>"

    return _VARIABLE.sub(one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def maos_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: s
        for name, s in compose["services"].items()
        if interpolate(s.get("image", "")).startswith("maos:")
    }


def test_compose_matches_the_compose_specification() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_compose_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        COMPOSE.read_text()
        .replace("restart: unless-stopped", "restart: sometimes", 1)
        .replace("stop_grace_period: 45s", "stop_grace_perod: 45s")
    )
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "stop_grace_perod" in done.stdout


REPLICAS = ("controlplane", "controlplane-2")


def test_compose_services(compose: dict[str, Any]) -> None:
    """Two control-plane replicas sharing PostgreSQL and Redis, each on its own volume and host ports."""
    assert set(compose["services"]) == {
        "postgres",
        "redis",
        "migrate",
        *REPLICAS,
        "agent-echo",
        "agent-researcher",
        "prometheus",
    }
    services = compose["services"]
    first, second = (services[name] for name in REPLICAS)
    assert first["command"] == second["command"]
    assert {k: v for k, v in first["environment"].items() if k != "MAOS_REPLICAS_ADVERTISE_ADDRESS"} == {
        k: v for k, v in second["environment"].items() if k != "MAOS_REPLICAS_ADVERTISE_ADDRESS"
    }
    for name in REPLICAS:
        service = services[name]
        assert "replicas" not in service.get("deploy", {})  # each replica is its own service
        assert service["environment"]["MAOS_REPLICAS_ADVERTISE_ADDRESS"] == f"{name}:7100"
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}
    volumes = [first["volumes"], second["volumes"]]
    assert volumes[0] != volumes[1]  # MAOS_HOME (pid file, logs) is each replica's own
    host_ports = [p.rsplit(":", 2)[1] for s in (first, second) for p in s["ports"]]
    assert len(host_ports) == len(set(host_ports))
    for service in services.values():  # only the replicas talk to Redis
        if service not in (first, second):
            assert "MAOS_REDIS_URL" not in service.get("environment", {})


def test_compose_redis_asks_for_its_password(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    password = command[command.index("--requirepass") + 1]
    assert password == "${REDIS_PASSWORD:?set REDIS_PASSWORD in deploy/.env}"
    assert redis["environment"]["REDISCLI_AUTH"] == password  # the health check's redis-cli
    assert "ports" not in redis  # the Compose network only
    for name in REPLICAS:
        url = compose["services"][name]["environment"]["MAOS_REDIS_URL"]
        assert url == "redis://:" + password + "@redis:6379/0"


def test_compose_runs_the_image_the_dockerfile_builds(compose: dict[str, Any]) -> None:
    services = maos_services(compose)
    assert set(services) == {"migrate", *REPLICAS, "agent-echo", "agent-researcher"}
    assert {interpolate(s["image"]) for s in services.values()} == {f"maos:{VERSION}"}
    build = compose["services"]["migrate"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    for name, service in services.items():
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        if name not in REPLICAS:  # the image's health check asks a control plane in the same container
            assert service["healthcheck"] == {"disable": True}, name


def test_compose_commands_and_environment(compose: dict[str, Any]) -> None:
    allowed = allowed_maos_env_vars()
    options = known_options()  # MAOS's own settings and the plugins' (the Claude plugin's claude.*)
    settings = {o.env_var: key for key, o in options.items()}
    problems: list[str] = []
    for name, service in maos_services(compose).items():
        problems += check_maos_command(service["command"], name)
        for variable, value in service.get("environment", {}).items():
            if variable.startswith("MAOS_"):
                assert variable in allowed, f"{name}: {variable} is no setting or option"
            if variable in settings and "${" not in str(value):
                parse_value(settings[variable], value, options)
    assert problems == []
    commands = {name: parse_command(s["command"])[0] for name, s in maos_services(compose).items()}
    assert commands == {
        "migrate": ["maos", "db", "migrate"],
        "controlplane": ["maos", "start"],
        "controlplane-2": ["maos", "start"],
        "agent-echo": ["maos-agent", "run"],
        "agent-researcher": ["maos-agent", "run"],
    }


@pytest.mark.parametrize("replica", REPLICAS)
def test_compose_control_plane_settings_start(compose: dict[str, Any], tmp_path: Path, replica: str) -> None:
    services = compose["services"]
    control_plane = services[replica]
    env = {k: interpolate(str(v)) for k, v in control_plane["environment"].items()}
    settings = load_settings(home=tmp_path, environ=env)
    check_bind_address(settings["server.address"], settings["server.allow_insecure_remote"])
    check_metrics_address(settings["server.metrics_address"], settings["server.allow_insecure_remote"])
    assert settings.database_url.startswith(
        "postgresql+psycopg://maos:<POSTGRES_PASSWORD>@postgres:5432/maos"
    )
    assert settings["redis.url"] == "redis://:<REDIS_PASSWORD>@redis:6379/0"
    assert env["MAOS_DATABASE_PRIMARY_URL"] == interpolate(
        services["migrate"]["environment"]["MAOS_DATABASE_PRIMARY_URL"]
    )
    _, params = parse_command(control_plane["command"])
    assert params["agents"] == "" and params["migrate"] is False
    assert control_plane["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    port = settings["server.address"].rpartition(":")[2]
    assert settings["replicas.advertise_address"] == f"{replica}:{port}"
    for name in ("agent-echo", "agent-researcher"):
        _, agent = parse_command(services[name]["command"])
        assert agent["server"].split(",") == [f"{r}:{port}" for r in REPLICAS], name  # fails over to either
        for r in REPLICAS:
            assert services[name]["depends_on"][r] == {"condition": "service_healthy"}
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"{r}:{settings['server.metrics_port']}" for r in REPLICAS]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]


def test_every_compose_variable_is_in_env_example() -> None:
    used = set(_VARIABLE.findall(COMPOSE.read_text()))
    documented = set(
        re.findall(r"^#? ?([A-Z_][A-Z0-9_]*)=", (DEPLOY / "env.example").read_text(), re.MULTILINE)
    )
    assert used == documented
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().split()


# --- the Dockerfile ----------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def last(instruction: str) -> str:
    return [args for ins, args in dockerfile() if ins == instruction][-1]


def test_the_image_is_built_in_two_stages_and_runs_unprivileged() -> None:
    stages = [args for ins, args in dockerfile() if ins == "FROM"]
    assert stages == ["${BASE_IMAGE} AS build", "${BASE_IMAGE} AS runtime"]
    assert last("USER") == f"{IMAGE_UID}:{IMAGE_UID}"
    assert f"MAOS_HOME={MAOS_HOME}" in last("ENV").split()
    assert json.loads(last("VOLUME")) == [MAOS_HOME]
    assert {int(p) for p in last("EXPOSE").split()} == {
        7100,
        *(OPTIONS[f"server.{port}"].default for port in ("http_port", "dashboard_port", "metrics_port")),
    }
    runtime = dockerfile()[[i for i, (ins, _) in enumerate(dockerfile()) if ins == "FROM"][1] :]
    assert [args for ins, args in runtime if ins == "COPY"] == ["--from=build /opt/maos /opt/maos"]


def test_the_image_s_commands() -> None:
    cmd = json.loads(last("CMD"))
    path, params = parse_command(cmd)
    assert path == ["maos", "start"] and params["agents"] == ""  # one process: no local agents
    options, _, check = last("HEALTHCHECK").partition(" CMD ")
    path, params = parse_command(json.loads(check))
    assert path == ["maos", "health"] and params["probe"] is True
    timeout = float(re.search(r"--timeout=(\d+)s", options).group(1))
    assert float(json.loads(check)[json.loads(check).index("--timeout") + 1]) < timeout


def test_the_image_holds_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    # The folders the packages are built from (maos_cli and maos_plugins come from cli/ and plugins/).
    packages = {
        setuptools["package-dir"].get(p.split(".")[0], p.split(".")[0]) for p in setuptools["packages"]
    }
    copied = {
        source
        for ins, args in dockerfile()
        if ins == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    }
    assert copied == packages | {"pyproject.toml", "README.md"}
    assert {"postgres", "redis"} <= set(project["project"]["optional-dependencies"])
    assert any('[postgres,redis]"' in args for ins, args in dockerfile() if ins == "RUN")
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert ignored[0] == "*" and {f"!{p}/" for p in packages} | {"!pyproject.toml", "!README.md"} <= set(
        ignored
    )
