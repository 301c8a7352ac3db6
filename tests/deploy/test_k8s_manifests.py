"""deploy/k8s validated offline: Kubernetes' own schemas, and what the manifests promise.

``kubernetes-validate`` ships the OpenAPI-derived JSON schemas of every Kubernetes release, so
no cluster and no network is needed; the strict schemas also refuse unknown fields. Then the
promises: agents are a StatefulSet whose pod name is the agent id, with a volume each; the
broker runs exactly the configuration in broker/; every SOCIETY_* variable and command is one
the ``society`` parser accepts; selectors select; secrets hold the keys that are asked for.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from agents.bus.url import parse_broker_url
from tests.deploy.cli_check import check_society_container

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "k8s"
#: The oldest Kubernetes release still commonly run, and the newest the schemas know.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())

Manifest = dict[str, Any]


def manifests() -> list[Manifest]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found: list[Manifest] = []
    for name in kustomization["resources"]:
        found.extend(doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc)
    return found


def find(kind: str, name: str) -> Manifest:
    for doc in manifests():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    pytest.fail(f"deploy/k8s has no {kind} {name}")


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """deploy/k8s/credentials.env as broker/make-passwords.sh writes it."""
    path = tmp_path_factory.mktemp("k8s") / "credentials.env"
    subprocess.run(["sh", str(ROOT / "broker" / "make-passwords.sh"), str(path)], check=True)
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_kubernetes(version: str) -> None:
    docs = manifests()
    assert {doc["kind"] for doc in docs} >= {
        "Namespace", "ConfigMap", "Deployment", "StatefulSet", "Service",
        "PersistentVolumeClaim",
    }  # fmt: skip
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(map(str, exc.path))
            pytest.fail(f"{where} is not valid Kubernetes {version}: {path}: {exc.message}")


def test_the_validator_is_not_a_rubber_stamp() -> None:
    deployment = find("Deployment", "coordinator")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRefs"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_agents_are_a_statefulset_whose_pod_name_is_the_agent_id() -> None:
    agents = find("StatefulSet", "agent")
    container = pod_spec(agents)["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    assert env["SOCIETY_AGENT_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    claims = {claim["metadata"]["name"] for claim in agents["spec"]["volumeClaimTemplates"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert "data" in claims, "each agent's data is on its own volume"
    assert env["SOCIETY_DATA_DIR"]["value"] == mounts["data"]
    # It writes only its volume: a read-only root, and scratch space in memory.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {volume["name"]: volume for volume in pod_spec(agents).get("volumes", [])}
    for name in set(mounts) - claims:
        assert volumes[name]["emptyDir"]["medium"] == "Memory", name
    headless = find("Service", agents["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    # An agent that lost the broker keeps learning: never restart it for that.
    assert "livenessProbe" not in container
    assert container["readinessProbe"]["exec"]["command"][1:3] == ["/app/healthcheck.py", "agent"]


def test_the_coordinator_writes_only_its_volume_and_memory() -> None:
    coordinator = find("Deployment", "coordinator")
    container = pod_spec(coordinator)["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {volume["name"]: volume for volume in pod_spec(coordinator)["volumes"]}
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container["volumeMounts"]}
    assert "persistentVolumeClaim" in mounts["/data"]
    assert mounts["/tmp"]["emptyDir"]["medium"] == "Memory"


def test_the_broker_runs_exactly_the_configuration_in_broker() -> None:
    config = find("ConfigMap", "mosquitto-config")["data"]
    for key, path in (
        ("mosquitto.conf", "mosquitto.conf"),
        ("acl", "acl"),
        ("build-passwd.sh", "build-passwd.sh"),
    ):
        assert config[key] == (ROOT / "broker" / path).read_text(), (
            f"deploy/k8s/broker.yaml's {key} differs from broker/{path}: copy it over"
        )
    broker = find("Deployment", "mosquitto")
    container = pod_spec(broker)["containers"][0]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec(broker)["volumes"]}
    assert volumes[mounts["/mosquitto/config"]]["configMap"]["name"] == "mosquitto-config"
    assert "emptyDir" in volumes[mounts["/mosquitto/auth"]]
    assert "persistentVolumeClaim" in volumes[mounts["/mosquitto/data"]]
    command = " ".join(container["command"])
    assert "build-passwd.sh /mosquitto/auth/passwd" in command
    env = {item["name"] for item in container["env"]}
    assert {"MQTT_COORDINATOR_PASSWORD", "MQTT_AGENT_PASSWORD"} <= env


def resolve_env(container: dict[str, Any], credentials: dict[str, str]) -> dict[str, str]:
    """A container's environment as the kubelet would build it for pod agent-0."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        values.update(find("ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            # $(VAR) refers to a variable defined before it.
            values[item["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: values.get(m.group(1), m.group(0)), item["value"]
            )
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "mqtt-credentials"
            assert ref["key"] in credentials, f"the Secret has no key {ref['key']}"
            values[item["name"]] = credentials[ref["key"]]
        else:
            assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            values[item["name"]] = "agent-0"
    return values


def test_every_society_container_is_a_valid_society_command(credentials: dict[str, str]) -> None:
    checked = set()
    acl_users = set(
        re.findall(r"^user (\S+)$", (ROOT / "broker" / "acl").read_text(), re.MULTILINE)
    )
    for kind, name in (("Deployment", "coordinator"), ("StatefulSet", "agent")):
        container = pod_spec(find(kind, name))["containers"][0]
        assert container["image"].startswith("agent-society")
        env = resolve_env(container, credentials)
        args = check_society_container(f"{kind}/{name}", container["args"], env)
        url = parse_broker_url(env["SOCIETY_BROKER"])
        assert (url.host, url.port) == ("mosquitto", 1883)
        assert url.username in acl_users
        assert url.username is not None
        assert url.password == credentials[f"MQTT_{url.username.upper()}_PASSWORD"]
        checked.add(args.command)
    assert checked == {"coordinator", "agent"}


def test_services_select_their_pods_and_the_metrics_port_is_served() -> None:
    workloads = [doc for doc in manifests() if doc["kind"] in {"Deployment", "StatefulSet"}]
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]
    for service in (doc for doc in manifests() if doc["kind"] == "Service"):
        selected = [
            w
            for w in workloads
            if service["spec"]["selector"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, f"Service {service['metadata']['name']} selects {selected}"
        container = pod_spec(selected[0])["containers"][0]
        ports = {port["name"] for port in container.get("ports", [])}
        for port in service["spec"].get("ports", []):
            assert port["targetPort"] in ports, service["metadata"]["name"]
    coordinator = pod_spec(find("Deployment", "coordinator"))["containers"][0]
    env = {item["name"]: item.get("value") for item in coordinator["env"]}
    metrics = next(p for p in coordinator["ports"] if p["name"] == "metrics")
    assert str(metrics["containerPort"]) == env["SOCIETY_METRICS_PORT"]
    service = find("Service", "coordinator")
    assert service["spec"]["ports"][0]["port"] == metrics["containerPort"]


def test_the_kustomization_ties_it_together(credentials: dict[str, str]) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), name
    generator = kustomization["secretGenerator"][0]
    assert generator["name"] == "mqtt-credentials"
    assert generator["envs"] == ["credentials.env"]
    # The generated file is a secret: never in the repository, never in the image.
    assert (
        not (K8S / "credentials.env").exists()
        or "credentials.env" in (ROOT / ".dockerignore").read_text()
    )
    assert {"MQTT_COORDINATOR_PASSWORD", "MQTT_AGENT_PASSWORD"} <= set(credentials)
