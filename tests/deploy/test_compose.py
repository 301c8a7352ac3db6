"""docker-compose.yml, the Dockerfile and .dockerignore, checked offline (no Docker engine).

The compose file is validated against the compose-spec JSON schema (the copy that the
``check-jsonschema`` package ships), interpolated with the ``.env`` that
``broker/make-passwords.sh`` writes, and every service that runs our image has its command
and SOCIETY_* environment parsed by the real ``society`` parser. The rest are the promises
the file makes: healthchecks everywhere, start order by health, agents that scale, mounted
files that exist, credentials that match the broker's users and ACL.
"""

from __future__ import annotations

import fnmatch
import importlib.resources
import itertools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agents.bus.url import parse_broker_url
from tests.deploy.cli_check import check_society_container

ROOT = Path(__file__).parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
IMAGE = "agent-society"

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_]\w*))"
)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: $VAR, ${VAR}, ${VAR:-default}, ${VAR:?error}, $$."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        unset_or_empty = current is None or (op is not None and op.startswith(":") and not current)
        if op in {":?", "?"} and unset_or_empty:
            pytest.fail(f"docker-compose.yml needs {name}: {arg}")
        if op in {":-", "-"} and unset_or_empty:
            return arg
        if op in {":+", "+"}:
            return "" if unset_or_empty else arg
        if current is None:
            pytest.fail(f"docker-compose.yml uses ${name}, which nothing sets")
        return current

    return _VARIABLE.sub(replace, value)


def interpolate_all(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_all(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_all(value, env) for key, value in node.items()}
    return node


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def dotenv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The .env that broker/make-passwords.sh writes for a new user."""
    path = tmp_path_factory.mktemp("compose") / ".env"
    subprocess.run(["sh", str(ROOT / "broker" / "make-passwords.sh"), str(path)], check=True)
    return read_env_file(path)


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any], dotenv: dict[str, str]) -> dict[str, Any]:
    interpolated: dict[str, Any] = interpolate_all(raw, dotenv)
    return interpolated


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def runs_our_image(service: dict[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith(IMAGE)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def test_compose_file_follows_the_compose_spec(raw: dict[str, Any]) -> None:
    schema_file = (
        importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    )
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_the_schema_check_catches_a_broken_file(raw: dict[str, Any]) -> None:
    """The schema is strict enough to matter: a misspelt key is an error."""
    schema_file = (
        importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    )
    validator = jsonschema.Draft202012Validator(json.loads(schema_file.read_text()))
    broken = json.loads(json.dumps(raw))
    broken["services"]["agent"]["healthckeck"] = broken["services"]["agent"].pop("healthcheck")
    assert list(validator.iter_errors(broken))


def test_every_society_container_is_a_valid_society_command(compose: dict[str, Any]) -> None:
    ours = {name: s for name, s in services(compose).items() if runs_our_image(s)}
    assert set(ours) == {"coordinator", "agent"}
    for name, service in ours.items():
        command = service["command"]
        assert isinstance(command, list), f"{name}: give the command as a list"
        check_society_container(f"service {name}", command, environment(service))


def test_the_agents_configuration_builds(compose: dict[str, Any]) -> None:
    """The agent's scenario and settings combine into a real agent configuration."""
    from agents.cli.agent_config import agent_config
    from agents.cli.options import settings_of
    from agents.flags import AgentFlags

    agent = services(compose)["agent"]
    args = check_society_container("service agent", agent["command"], environment(agent))
    config = agent_config(settings_of(AgentFlags, args))
    assert config.learner.budget_steps == 0, "a container agent learns until it is stopped"
    assert config.society == environment(services(compose)["coordinator"])["SOCIETY_NAME"]


def test_the_checker_refuses_unknown_variables_and_bad_values() -> None:
    with pytest.raises(AssertionError, match="SOCIETY_METRIC_PORT"):
        check_society_container("x", ["coordinator"], {"SOCIETY_METRIC_PORT": "9464"})
    with pytest.raises(AssertionError, match="SOCIETY_SCENARIO"):
        check_society_container("x", ["coordinator"], {"SOCIETY_SCENARIO": "cartpole"})
    with pytest.raises(AssertionError, match="SOCIETY_STEPS"):
        check_society_container("x", ["agent"], {"SOCIETY_STEPS": "many"})
    with pytest.raises(AssertionError, match="invalid choice"):
        check_society_container("x", ["agnet"], {})


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(
    compose: dict[str, Any],
) -> None:
    for name, service in services(compose).items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services(compose), f"{name} depends on unknown {dependency}"
            assert condition["condition"] == "service_healthy", f"{name} -> {dependency}"
    order = ["mosquitto", "coordinator", "prometheus", "grafana"]
    for before, after in itertools.pairwise(order):
        assert before in services(compose)[after]["depends_on"], f"{after} must wait for {before}"
    assert set(services(compose)["agent"]["depends_on"]) == {"mosquitto", "coordinator"}


def test_published_ports_bind_to_loopback_unless_told(raw: dict[str, Any]) -> None:
    """Every published port is on 127.0.0.1 by default; PUBLISH_ADDRESS and *_HOST_PORT move it."""
    published = {
        name: service["ports"] for name, service in raw["services"].items() if "ports" in service
    }
    assert set(published) == {"mosquitto", "coordinator", "prometheus", "grafana"}
    moved = {"PUBLISH_ADDRESS": "0.0.0.0", "MQTT_HOST_PORT": "11883", "GRAFANA_HOST_PORT": "13000"}  # noqa: S104
    for name, ports in published.items():
        for port in ports:
            host, host_port, container_port = interpolate(port, {}).split(":")
            assert host == "127.0.0.1", name
            assert host_port == container_port, name
            assert interpolate(port, moved).startswith("0.0.0.0:"), name
    assert interpolate(published["mosquitto"][0], moved) == "0.0.0.0:11883:1883"
    assert interpolate(published["grafana"][0], moved) == "0.0.0.0:13000:3000"


def test_agents_scale(compose: dict[str, Any]) -> None:
    """`--scale agent=N` needs no fixed name, id or host port; ids come from hostnames."""
    agent = services(compose)["agent"]
    assert "container_name" not in agent
    assert "hostname" not in agent
    assert "ports" not in agent
    env = environment(agent)
    assert "SOCIETY_AGENT_ID" not in env, "a fixed id would make every replica the same agent"
    assert "SOCIETY_DATA_DIR" not in env, "the default folder is per agent id"
    targets = [volume.split(":")[1] for volume in agent["volumes"]]
    assert "/data" in targets, "checkpoints and outboxes must outlive the container"


def test_our_containers_write_only_their_volume(compose: dict[str, Any]) -> None:
    for name in ("coordinator", "agent"):
        service = services(compose)[name]
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name
        assert [volume.split(":")[1] for volume in service["volumes"]] == ["/data"], name


def test_clients_log_in_as_the_brokers_users_with_the_brokers_passwords(
    compose: dict[str, Any],
) -> None:
    broker_env = environment(services(compose)["mosquitto"])
    acl_users = set(
        re.findall(r"^user (\S+)$", (ROOT / "broker" / "acl").read_text(), re.MULTILINE)
    )
    users = {}
    for name in ("coordinator", "agent"):
        url = parse_broker_url(environment(services(compose)[name])["SOCIETY_BROKER"])
        assert url.host == "mosquitto"
        assert url.port == 1883
        assert url.username in acl_users, f"{name} logs in as {url.username}, not in broker/acl"
        assert url.username is not None
        # broker/build-passwd.sh makes user <u> from MQTT_<U>_PASSWORD.
        expected = broker_env[f"MQTT_{url.username.upper()}_PASSWORD"]
        assert url.password == expected, f"{name}'s password is not the broker's"
        users[name] = url.username
    assert users == {"coordinator": "coordinator", "agent": "agent"}


def test_the_broker_runs_the_production_configuration(compose: dict[str, Any]) -> None:
    broker = services(compose)["mosquitto"]
    assert broker["image"].startswith("eclipse-mosquitto:2")
    mounts = {}
    for volume in broker["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[target] = source
    assert mounts["/mosquitto/config/mosquitto.conf"] == "./broker/mosquitto.conf"
    assert mounts["/mosquitto/config/acl"] == "./broker/acl"
    command = " ".join(broker["command"])
    assert "build-passwd.sh /mosquitto/auth/passwd" in command
    assert "mosquitto -c /mosquitto/config/mosquitto.conf" in command
    config = (ROOT / "broker" / "mosquitto.conf").read_text()
    settings = dict(
        line.split(" ", 1) for line in config.splitlines() if line and not line.startswith("#")
    )
    assert settings["allow_anonymous"] == "false"
    assert settings["password_file"] == "/mosquitto/auth/passwd"
    assert "/mosquitto/auth" in broker["tmpfs"]
    assert settings["acl_file"] in mounts
    assert settings["persistence"] == "true"
    assert settings["persistence_location"].rstrip("/") in mounts, "persistence on a volume"


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


def test_prometheus_scrapes_the_coordinator_and_grafana_reads_prometheus(
    compose: dict[str, Any],
) -> None:
    port = environment(services(compose)["coordinator"])["SOCIETY_METRICS_PORT"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = [
        target
        for job in prometheus["scrape_configs"]
        for config in job["static_configs"]
        for target in config["targets"]
    ]
    assert f"coordinator:{port}" in targets
    assert f"127.0.0.1:{port}:{port}" in services(compose)["coordinator"]["ports"]
    datasources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    mounts = [v.split(":")[:2] for v in services(compose)["prometheus"]["volumes"]]
    for rule_file in prometheus["rule_files"]:
        assert [f"./deploy/prometheus/{rule_file}", f"/etc/prometheus/{rule_file}"] in mounts


def test_the_image_runs_society_and_has_what_the_healthchecks_need(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["society"]' in dockerfile
    # What a user with internet access gets by default: the slim Python image and the CPU
    # build of torch from PyTorch's index (tests/containers/ builds it here with stand-ins).
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.MULTILINE))
    assert defaults["BASE_IMAGE"] == "python:3.11-slim"
    assert defaults["TORCH"] == "torch==2.13.0"
    assert defaults["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert 'pip install --find-links /tmp/torch-wheels --index-url "$TORCH_INDEX_URL" "$TORCH"' in (
        dockerfile
    )
    # The CA bundle is a BuildKit secret, mounted for pip only: never copied into a layer.
    assert "--mount=type=secret,id=ca" in dockerfile
    assert not re.search(r"^(COPY|ADD) .*(\.crt|\.pem|ca)\b", dockerfile, re.MULTILINE)
    copied = re.findall(r"^COPY (\S+) (\S+)$", dockerfile, re.MULTILINE)
    assert ("deploy/healthcheck.py", "/app/healthcheck.py") in copied
    for name in ("coordinator", "agent"):
        test = services(compose)[name]["healthcheck"]["test"]
        assert test[1:3] == ["python", "/app/healthcheck.py"], name
        assert test[3] == name
    # .dockerignore keeps secrets out and leaves in what the image is built from.
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("pyproject.toml", "README.md", "agents/__init__.py", "deploy/healthcheck.py"):
        assert not any(fnmatch.fnmatch(needed, p) or needed.startswith(f"{p}/") for p in ignored)
    assert ".env" in ignored
