"""deploy/kubernetes: every overlay rendered, checked against the Kubernetes schemas, and cross-checked.

The schemas are those kubernetes-validate bundles, for the oldest Kubernetes the manifests support
(1.29: gRPC probes, policy/v1, batch/v1 with ttlSecondsAfterFinished are all GA there) and the newest
it knows, in strict mode (an unknown field is an error). The cross-checks read the manifests the way
the cluster and MAOS would: selectors select pods, ports and probes name ports that exist, every
Secret and ConfigMap a pod reads exists (or is documented in base/secrets.example.yaml, for those
the operator creates), commands parse with the real ``maos``/``maos-agent`` CLIs, every ``MAOS_*``
variable is a setting or an option, and the control plane's settings pass its own start-up checks.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agent_sdk.addresses import parse_addresses
from controlplane.api.server import check_bind_address, check_metrics_address
from controlplane.config import known_options, load_settings, parse_value
from controlplane.http.server import check_http_address
from tests.deploy._common import (
    IMAGE_UID,
    KUBERNETES,
    MAOS_HOME,
    OVERLAYS,
    VERSION,
    allowed_maos_env_vars,
    check_maos_command,
    parse_command,
)
from tests.deploy.kustomize import KustomizeError, load_documents, merge, render

OLDEST_KUBERNETES = "1.29.0"
SCHEMA_VERSIONS = [OLDEST_KUBERNETES, kubernetes_validate.utils.latest_version()]
SECRET_EXAMPLES = KUBERNETES / "base" / "secrets.example.yaml"
CONTROL_PLANE = "maos-controlplane"
HEADLESS = "maos-controlplane-headless"

Resources = list[dict[str, Any]]


@pytest.fixture(scope="module", params=[o.name for o in OVERLAYS])
def overlay(request: pytest.FixtureRequest) -> tuple[str, Resources]:
    """``(name, rendered resources)`` of each overlay."""
    return request.param, render(KUBERNETES / "overlays" / request.param)


def find(resources: Resources, kind: str, name: str) -> dict[str, Any]:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pods(resources: Resources) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """``(kind/name, pod spec, pod labels)`` of every workload."""
    out = []
    for r in resources:
        template = r.get("spec", {}).get("template")
        if r["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet") and template:
            out.append(
                (f"{r['kind']}/{r['metadata']['name']}", template["spec"], template["metadata"]["labels"])
            )
    return out


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def is_maos(container: dict[str, Any]) -> bool:
    return container["image"].rpartition("/")[2].partition(":")[0] == "maos"


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def secret_examples() -> dict[str, set[str]]:
    return {
        d["metadata"]["name"]: set(d.get("stringData", {})) | set(d.get("data", {}))
        for d in load_documents(SECRET_EXAMPLES)
    }


def config_yml(resources: Resources) -> str:
    return find(resources, "ConfigMap", "maos-config")["data"]["config.yml"]


def settings_of(resources: Resources, tmp_path: Path, env: dict[str, str]) -> Any:
    """The settings the control plane would run with: the ConfigMap's config.yml plus its literal env."""
    home = tmp_path / "settings-home"
    home.mkdir(exist_ok=True)
    (home / "config.yml").write_text(config_yml(resources))
    return load_settings(home=home, environ={"MAOS_HOME": str(home), **env})


def literal_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def control_plane_container(resources: Resources) -> dict[str, Any]:
    pod = find(resources, "Deployment", CONTROL_PLANE)["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "controlplane")


# --- rendering ---------------------------------------------------------------------------------


def test_the_overlays() -> None:
    assert [o.name for o in OVERLAYS] == ["dev", "production", "production-keda"]


def test_a_patch_must_name_an_existing_resource(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{KUBERNETES / 'base'}]\npatches:\n  - path: p.yaml\n"
    )
    (tmp_path / "p.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: maos-nothing}\n"
    )
    with pytest.raises(KustomizeError, match="patches no resource"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(f"resources: [{KUBERNETES / 'base'}]\nreplicas: []\n")
    with pytest.raises(KustomizeError, match="beyond what the tests render"):
        render(tmp_path)


def test_strategic_merge() -> None:
    base = {
        "spec": {
            "replicas": 2,
            "containers": [
                {"name": "a", "image": "x", "probe": {"grpc": {"port": 1}}},
                {"name": "b", "command": ["one"]},
            ],
        }
    }
    patch = {
        "spec": {
            "replicas": None,
            "containers": [
                {"name": "a", "probe": {"grpc": None, "exec": {}}},
                {"name": "b", "command": ["two"]},
                {"name": "c"},
            ],
        }
    }
    assert merge(base, patch) == {
        "spec": {
            "containers": [
                {"name": "c"},
                {"name": "a", "image": "x", "probe": {"exec": {}}},
                {"name": "b", "command": ["two"]},
            ]
        }
    }


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its Kustomize) is not installed")
def test_the_rendering_is_kustomize_s(overlay: tuple[str, Resources]) -> None:
    name, resources = overlay
    printed = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / "overlays" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    theirs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(printed) if d}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in resources}
    assert ours == theirs


# --- schemas -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_manifest_matches_the_kubernetes_schemas(overlay: tuple[str, Resources], version: str) -> None:
    _, resources = overlay
    checked = 0
    for resource in resources:
        if resource["apiVersion"].startswith("keda.sh/"):
            continue  # a custom resource: test_keda_scales_a_deployment_on_an_exported_metric
        kubernetes_validate.validate(resource, version, strict=True)
        checked += 1
    assert checked >= 12


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_the_secret_examples_match_the_schemas(version: str) -> None:
    for secret in load_documents(SECRET_EXAMPLES):
        kubernetes_validate.validate(secret, version, strict=True)
    base = yaml.safe_load((KUBERNETES / "base" / "kustomization.yaml").read_text())
    assert SECRET_EXAMPLES.name not in base["resources"]  # examples are never applied


def test_yaml_lint() -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(file=str(KUBERNETES.parent / ".yamllint.yaml"))
    files = sorted([*KUBERNETES.parent.rglob("*.yaml"), *KUBERNETES.parent.rglob("*.yml")])
    assert len(files) >= 15
    problems = [
        f"{path.relative_to(KUBERNETES.parent)}:{p.line}: {p.desc} ({p.rule})"
        for path in files
        for p in linter.run(path.read_text(), config, str(path))
    ]
    assert problems == []


# --- cross-references --------------------------------------------------------------------------


def test_selectors_select_the_pods_they_mean(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    workloads = pods(resources)
    for r in resources:
        if r["kind"] in ("Deployment", "StatefulSet"):
            assert selects(r["spec"]["selector"]["matchLabels"], r["spec"]["template"]["metadata"]["labels"])
        if r["kind"] == "Service":
            matched = [(n, pod) for n, pod, labels in workloads if selects(r["spec"]["selector"], labels)]
            assert len(matched) == 1, f"Service/{r['metadata']['name']} selects {[n for n, _ in matched]}"
            port_names = {p["name"] for c in matched[0][1]["containers"] for p in c.get("ports", [])}
            for port in r["spec"]["ports"]:
                assert port["targetPort"] in port_names, f"Service/{r['metadata']['name']}: {port}"
        if r["kind"] == "PodDisruptionBudget":
            matched = [
                n for n, _, labels in workloads if selects(r["spec"]["selector"]["matchLabels"], labels)
            ]
            assert len(matched) == 1, f"PodDisruptionBudget/{r['metadata']['name']} selects {matched}"
        if r["kind"] == "NetworkPolicy":
            selector = r["spec"]["podSelector"].get("matchLabels", {})
            matched = [(n, pod) for n, pod, labels in workloads if selects(selector, labels)]
            assert matched, f"NetworkPolicy/{r['metadata']['name']} selects no pod"
            ports = {
                p["containerPort"]
                for _, pod in matched
                for c in pod["containers"]
                for p in c.get("ports", [])
            }
            for rule in r["spec"].get("ingress", []):
                assert {p["port"] for p in rule["ports"]} <= ports
                for peer in rule["from"]:
                    if "podSelector" in peer:
                        assert any(
                            selects(peer["podSelector"]["matchLabels"], labels) for _, _, labels in workloads
                        )


def test_control_plane_policy_admits_the_agents(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    policy = find(resources, "NetworkPolicy", "maos-controlplane")
    grpc_rule = next(rule for rule in policy["spec"]["ingress"] if rule["ports"][0]["port"] == 7100)
    for name, _, labels in pods(resources):
        if "agent" in name:
            assert any(selects(p["podSelector"]["matchLabels"], labels) for p in grpc_rule["from"]), name


def test_probes_ask_the_grpc_health_service(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    container = control_plane_container(resources)
    ports = {p["containerPort"] for p in container["ports"]}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[kind]
        if "grpc" in probe:
            assert probe["grpc"]["port"] in ports and "exec" not in probe
        else:
            path, params = parse_command(probe["exec"]["command"])
            assert path == ["maos", "health"] and params["probe"], probe
            assert probe["timeoutSeconds"] > 3  # the probe's own --timeout answers first


def test_the_secrets_and_config_maps_pods_read_exist(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    secrets = {
        r["metadata"]["name"]: set(r.get("stringData", {})) | set(r.get("data", {}))
        for r in resources
        if r["kind"] == "Secret"
    }
    secrets = {**secret_examples(), **secrets}
    maps = {r["metadata"]["name"]: set(r["data"]) for r in resources if r["kind"] == "ConfigMap"}
    claims = {
        f"StatefulSet/{r['metadata']['name']}": [
            t["metadata"]["name"] for t in r["spec"]["volumeClaimTemplates"]
        ]
        for r in resources
        if r["kind"] == "StatefulSet"
    }
    for name, pod, _ in pods(resources):
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        volumes.update({claim: {"name": claim} for claim in claims.get(name, [])})
        for volume in volumes.values():
            if "secret" in volume:
                keys = secrets[volume["secret"]["secretName"]]
                assert {i["key"] for i in volume["secret"].get("items", [])} <= keys, name
            if "configMap" in volume:
                assert volume["configMap"]["name"] in maps, name
        for container in containers(pod):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: {mount}"
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], set()), f"{name}: {ref}"


def test_commands_are_those_of_the_image(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    problems: list[str] = []
    seen = set()
    for name, pod, _ in pods(resources):
        for container in containers(pod):
            if not is_maos(container):
                assert "command" not in container  # other images (PostgreSQL) run their own entry point
                continue
            command = container["command"]
            if command[0] == "install":  # the init container: config.yml from the ConfigMap into MAOS_HOME
                assert command == [
                    "install",
                    "-m",
                    "0600",
                    "/etc/maos/config/config.yml",
                    f"{MAOS_HOME}/config.yml",
                ]
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                volumes = {v["name"]: v for v in pod["volumes"]}
                assert volumes[mounts["/etc/maos/config"]]["configMap"]["name"] == "maos-config"
                assert "emptyDir" in volumes[mounts[MAOS_HOME]]
                continue
            problems += check_maos_command(command, f"{name}/{container['name']}")
            seen.add(tuple(parse_command(command)[0]))
    assert problems == []
    assert seen == {("maos", "start"), ("maos", "db", "migrate"), ("maos-agent", "run")}


def test_maos_environment_variables_do_something(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    allowed = allowed_maos_env_vars()
    options = known_options()  # MAOS's own settings and the plugins' (the Claude plugin's claude.*)
    settings = {o.env_var: key for key, o in options.items()}
    for name, pod, _ in pods(resources):
        for container in containers(pod):
            for env in container.get("env", []):
                if env["name"].startswith("MAOS_"):
                    assert env["name"] in allowed, f"{name}: {env['name']} is no setting or option"
                if env["name"] in settings and "value" in env:
                    parse_value(settings[env["name"]], env["value"], options)


def test_images_are_the_one_the_dockerfile_builds(overlay: tuple[str, Resources]) -> None:
    name, resources = overlay
    images = {c["image"] for _, pod, _ in pods(resources) for c in containers(pod) if is_maos(c)}
    assert images == ({f"maos:{VERSION}"} if name == "dev" else {f"registry.example.com/maos:{VERSION}"})


def test_pods_run_locked_down(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    for name, pod, _ in pods(resources):
        assert pod["automountServiceAccountToken"] is False, name
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["seccompProfile"]["type"] == "RuntimeDefault", (
            name
        )
        for container in containers(pod):
            where = f"{name}/{container['name']}"
            c = container["securityContext"]
            assert c["allowPrivilegeEscalation"] is False and c["capabilities"]["drop"] == ["ALL"], where
            assert c["readOnlyRootFilesystem"] is True, where
            resources_ = container["resources"]
            assert {"cpu", "memory"} <= set(resources_["requests"]) and "memory" in resources_["limits"], (
                where
            )
            if is_maos(container):
                assert security["runAsUser"] == IMAGE_UID, where
                writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
                assert MAOS_HOME in writable, where
                if container["command"][0] != "install":
                    assert "/tmp" in writable, where


def test_the_control_plane_starts_with_these_settings(overlay: tuple[str, Resources], tmp_path: Path) -> None:
    """The settings pass the control plane's own refusals (plaintext beyond localhost, /metrics)."""
    _, resources = overlay
    container = control_plane_container(resources)
    settings = settings_of(resources, tmp_path, literal_env(container))
    assert settings.warnings == []
    tls = bool(settings["server.tls.cert_file"] and settings["server.tls.key_file"])
    check_bind_address(settings["server.address"], settings["server.allow_insecure_remote"], tls=tls)
    check_metrics_address(settings["server.metrics_address"], settings["server.allow_insecure_remote"])
    assert settings["agents.pool"] == {}  # agents run in their own pods
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "grpc": int(settings["server.address"].rpartition(":")[2]),
        "http": settings["server.http_port"],
        "dashboard": settings["server.dashboard_port"],
        "metrics": settings["server.metrics_port"],
    }
    for key in ("server.http_address", "server.dashboard_address"):  # the same rule as every other port
        check_http_address(settings[key], settings["server.allow_insecure_remote"], tls)
    assert settings["database.migrate_on_start"] is False and "--no-migrate" in container["command"]
    pod = find(resources, "Deployment", CONTROL_PLANE)["spec"]["template"]["spec"]
    for key in ("server.tls.cert_file", "server.tls.key_file", "client.tls.ca_file"):
        if settings[key]:
            assert_file_is_mounted(pod, container, settings[key], key)


def assert_file_is_mounted(pod: dict[str, Any], container: dict[str, Any], path: str, what: str) -> None:
    """``path`` lies in a Secret volume mounted into ``container`` and that Secret has the file's key."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        folder = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(folder) and "secret" in volumes[mount["name"]]:
            secret = volumes[mount["name"]]["secret"]
            key = path[len(folder) :]
            items = {i["path"]: i["key"] for i in secret.get("items", [])}
            assert items.get(key, key) in secret_examples()[secret["secretName"]], f"{what}: {path}"
            return
    raise AssertionError(f"{what}: {path} is in no mounted Secret")


def test_agents_dial_every_replica_by_the_headless_service(
    overlay: tuple[str, Resources], tmp_path: Path
) -> None:
    _, resources = overlay
    service = find(resources, "Service", CONTROL_PLANE)
    headless = find(resources, "Service", HEADLESS)
    assert headless["spec"]["clusterIP"] == "None"  # its DNS name answers with every ready replica's address
    assert headless["spec"]["selector"] == service["spec"]["selector"]
    assert not headless["spec"].get("publishNotReadyAddresses")  # only replicas whose readiness probe passes
    settings = settings_of(resources, tmp_path, literal_env(control_plane_container(resources)))
    tls = bool(settings["server.tls.cert_file"])
    agents = [
        (n, pod) for n, pod, labels in pods(resources) if labels.get("app.kubernetes.io/component") == "agent"
    ]
    assert len(agents) == 2
    for name, pod in agents:
        container = pod["containers"][0]
        _, params = parse_command(container["command"])
        target = params["server"]
        assert parse_addresses(target) == (target,) and target.startswith("dns:///"), name
        host, _, port = target.removeprefix("dns:///").rpartition(":")
        assert host == HEADLESS and int(port) in {p["port"] for p in headless["spec"]["ports"]}, name
        env = literal_env(container)
        assert "MAOS_JOIN_TOKEN" in {e["name"] for e in container["env"]}, name
        if tls:  # the certificate names the client Service's DNS name, which the CLI in the pod uses too
            namespace = service["metadata"]["namespace"]
            assert (
                env["MAOS_TLS_SERVER_NAME"]
                == settings["client.tls.server_name"]
                == f"{CONTROL_PLANE}.{namespace}.svc"
            )
            assert_file_is_mounted(pod, container, env["MAOS_TLS_CA"], f"{name} MAOS_TLS_CA")
        else:
            assert not {k for k in env if k.startswith("MAOS_TLS")}, name


def test_several_control_plane_replicas_share_the_database_and_redis(overlay: tuple[str, Resources]) -> None:
    """Replicas on one PostgreSQL and one Redis, updated one at a time, drained one at a time."""
    name, resources = overlay
    deployment = find(resources, "Deployment", CONTROL_PLANE)
    assert deployment["spec"]["replicas"] == (3 if name.startswith("production") else 2)
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    budget = find(resources, "PodDisruptionBudget", CONTROL_PLANE)["spec"]
    assert budget["maxUnavailable"] == 1
    assert selects(budget["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])
    env = {e["name"]: e for e in control_plane_container(resources)["env"]}
    assert env["MAOS_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "maos-redis", "key": "url"}
    assert env["MAOS_REPLICAS_ADVERTISE_ADDRESS"]["value"] == "$(POD_IP):7100"  # each pod its own address
    assert env["POD_IP"]["valueFrom"]["fieldRef"] == {"fieldPath": "status.podIP"}
    names = list(env)
    assert names.index("POD_IP") < names.index(
        "MAOS_REPLICAS_ADVERTISE_ADDRESS"
    )  # $(POD_IP) is defined before
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["kubernetes.io/hostname"]
    if name == "dev":  # its own Redis, reachable by the replicas alone
        redis = find(resources, "Secret", "maos-redis")["stringData"]
        assert redis["url"] == f"redis://:{redis['password']}@maos-redis:6379/0"
        policy = find(resources, "NetworkPolicy", "maos-redis")["spec"]
        assert [
            p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for p in policy["ingress"][0]["from"]
        ] == ["controlplane"]
    else:
        assert "maos-redis" in secret_examples() and not [
            r for r in resources if r["kind"] == "Secret" and r["metadata"]["name"] == "maos-redis"
        ]


def test_migrations_run_as_a_job_on_the_same_database(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    job = find(resources, "Job", "maos-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert parse_command(job["command"])[0] == ["maos", "db", "migrate"]
    url = [e for e in job["env"] if e["name"] == "MAOS_DATABASE_PRIMARY_URL"]
    assert url and url == [
        e for e in control_plane_container(resources)["env"] if e["name"] == "MAOS_DATABASE_PRIMARY_URL"
    ]


def test_keda_scales_a_deployment_on_an_exported_metric() -> None:
    from prometheus_client import generate_latest

    from controlplane.autoscaler import TypeScaling
    from controlplane.metrics import Metrics

    resources = render(KUBERNETES / "overlays" / "production-keda")
    scaled = [r for r in resources if r["kind"] == "ScaledObject"]
    assert len(scaled) == 1
    spec = scaled[0]["spec"]
    target = find(resources, "Deployment", spec["scaleTargetRef"]["name"])
    assert "replicas" not in target["spec"]  # the autoscaler owns it; `kubectl apply` must not reset it
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    config = yaml.safe_load(find(resources, "ConfigMap", "maos-config")["data"]["config.yml"])
    agent_type = target["metadata"]["name"].removeprefix("maos-agent-")
    assert agent_type in config["scaling"]["types"]  # the control plane exports the type's queue depth
    metrics = Metrics()
    try:
        # 3 held here, and 2 of the 5 unclaimed tasks as this replica's share
        metrics.watch_scaling(
            lambda: [TypeScaling(agent_type, 1, 20, queued=3, unclaimed=5, unclaimed_share=2)]
        )
        exported = generate_latest(metrics.registry).decode()
    finally:
        metrics.close()
    for trigger in spec["triggers"]:
        assert trigger["type"] == "prometheus"
        assert f'maos_scaling_queue_depth{{agent_type="{agent_type}"}} 5.0' in exported
        query = trigger["metadata"]["query"]
        # held work plus each replica's share of the unclaimed backlog, summed over replicas: the
        # backlog's shares add up to it, so the whole-system gauge must not be added again
        assert f'sum(maos_scaling_queue_depth{{agent_type="{agent_type}"}})' in query
        assert f'maos_scaling_unclaimed_depth{{agent_type="{agent_type}"}} 5.0' in exported
        assert "maos_scaling_unclaimed_depth" not in query
        assert float(trigger["metadata"]["threshold"]) > 0
