"""The real docker-compose.yml, started: broker, coordinator, 3 agents, Prometheus.

Marker ``containers``: not part of ``make test``; ``make test-containers`` builds the images
(tests/containers/build-images.sh) and runs this. It needs a running dockerd and Docker
Compose v2, and skips, saying so, without them.

The society runs as docker-compose.yml describes it, with the production broker (passwords
from ``broker/make-passwords.sh``, the ACL) and only tests/containers/compose.test.yml on top
(stand-in images of Mosquitto and Prometheus, no Grafana). Its own project name and bridge
network (compose's default network of the project), and host ports chosen free on 127.0.0.1,
so it runs beside anything else on the machine and no traffic leaves it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from agents._process import free_port

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

ROOT = Path(__file__).parents[2]
OVERRIDE = ROOT / "tests" / "containers" / "compose.test.yml"
IMAGE = "agent-society:latest"
AGENTS = 3
OUR_SERVICES = ("coordinator", "agent")
CHECKPOINT_EVERY = 10_000  # the cartpole scenario's learner.checkpoint_every
T = TypeVar("T")


def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


def docker_ready() -> str | None:
    """``None`` when dockerd answers and Compose v2 is there, else why not."""
    if shutil.which("docker") is None:
        return "no docker CLI"
    if run("docker", "info", check=False, timeout=30).returncode != 0:
        return "dockerd is not running (or not reachable)"
    version = run("docker", "compose", "version", "--short", check=False, timeout=30)
    if version.returncode != 0 or not version.stdout.strip().lstrip("v").startswith("2"):
        return "Docker Compose v2 is missing (`docker compose version`)"
    return None


def wait_until(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(2)


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - 127.0.0.1 only
        body: bytes = response.read()
    return body.decode()


@dataclass
class Society:
    project: str
    env_file: Path
    ports: dict[str, int]
    up_seconds: float

    def compose(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return run(
            "docker",
            "compose",
            "--project-name",
            self.project,
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(self.env_file),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "-f",
            str(OVERRIDE),
            *args,
            check=check,
            timeout=timeout,
        ).stdout

    def containers(self, service: str | None = None, *, every: bool = False) -> list[str]:
        """Ids of the project's (running, or ``every``) containers, by label."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        listed = run("docker", "ps", "-q", *(["-a"] if every else []), *filters).stdout
        return listed.split()

    def metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.ports['METRICS_HOST_PORT']}/metrics")

    def prometheus(self, path: str, **query: str) -> Any:
        url = f"http://127.0.0.1:{self.ports['PROMETHEUS_HOST_PORT']}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        answer = json.loads(http_get(url))
        assert answer["status"] == "success", answer
        return answer["data"]


def inspect(container: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(run("docker", "inspect", container).stdout)
    return found[0]


def agent_id(container: str) -> str:
    """A replica's agent id: ``agent-<container hostname>`` (docker-compose.yml)."""
    return f"agent-{inspect(container)['Config']['Hostname']}"


def metric_values(text: str, name: str) -> dict[str, float]:
    """``{agent: value}`` of a per-agent metric."""
    pattern = re.compile(rf'^{name}\{{agent="([^"]+)"\}} (\S+)$', re.MULTILINE)
    return {agent: float(value) for agent, value in pattern.findall(text)}


def image_exists(image: str) -> bool:
    return run("docker", "image", "inspect", image, check=False).returncode == 0


def base_images() -> dict[str, str]:
    """The broker's and Prometheus's images, chosen as build-images.sh chose them: the one a
    variable names, else the real image when it is here, else the stand-in."""
    chosen = {}
    for name, real, stand_in in (
        ("MOSQUITTO_IMAGE", "eclipse-mosquitto:2.0.20", "agent-society-stand-in/mosquitto:2.0"),
        ("PROMETHEUS_IMAGE", "prom/prometheus:v2.53.0", "agent-society-stand-in/prometheus:2.42"),
    ):
        image = os.environ.get(name) or (real if image_exists(real) else stand_in)
        if not image_exists(image):
            pytest.fail(f"{image} is missing: run tests/containers/build-images.sh (make images)")
        chosen[name] = image
    return chosen


@pytest.fixture(scope="module")
def society(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Society]:
    reason = docker_ready()
    if reason is not None:
        pytest.skip(f"container tests: {reason}")
    if not image_exists(IMAGE):
        pytest.fail(f"{IMAGE} is missing: run tests/containers/build-images.sh (make images)")
    folder = tmp_path_factory.mktemp("compose")
    env_file = folder / ".env"
    run("sh", str(ROOT / "broker" / "make-passwords.sh"), str(env_file))
    ports = {
        name: free_port("127.0.0.1")
        for name in ("MQTT_HOST_PORT", "METRICS_HOST_PORT", "PROMETHEUS_HOST_PORT")
    }
    with env_file.open("a") as env:
        for name, port in ports.items():
            env.write(f"{name}={port}\n")
        for name, image in base_images().items():
            env.write(f"{name}={image}\n")
    society = Society(f"agent-society-test-{os.getpid()}", env_file, ports, 0.0)
    start = time.monotonic()
    try:
        society.compose(
            "up",
            "--detach",
            "--no-build",
            "--scale",
            f"agent={AGENTS}",
            "--wait",
            "--wait-timeout",
            "400",
            timeout=460,
        )
    except subprocess.CalledProcessError as exc:
        logs = society.compose("logs", "--no-color", "--tail", "40", check=False)
        society.compose("down", "--volumes", "--remove-orphans", check=False)
        pytest.fail(f"docker compose up failed:\n{exc.stderr[-3000:]}\n{logs[-6000:]}")
    society.up_seconds = time.monotonic() - start
    print(f"\ncompose up to healthy: {society.up_seconds:.0f} s")
    try:
        yield society
    finally:
        society.compose("down", "--volumes", "--remove-orphans", check=False, timeout=180)


def test_every_service_starts_and_every_healthcheck_passes(society: Society) -> None:
    services = society.compose("ps", "--services").split()
    assert sorted(services) == ["agent", "coordinator", "mosquitto", "prometheus"]
    assert len(society.containers("agent")) == AGENTS
    assert society.containers("grafana", every=True) == []
    for container in society.containers():
        state = inspect(container)["State"]
        assert state["Health"]["Status"] == "healthy", (container, state["Health"]["Log"][-1:])


def test_published_ports_are_on_loopback_only(society: Society) -> None:
    for container in society.containers():
        bindings = inspect(container)["HostConfig"]["PortBindings"] or {}
        for binding in (b for ports in bindings.values() for b in ports):
            assert binding["HostIp"] == "127.0.0.1", container


def test_the_broker_runs_the_production_configuration(society: Society) -> None:
    (broker,) = society.containers("mosquitto")
    anonymous = run(
        "docker", "exec", broker, "mosquitto_sub", "-h", "127.0.0.1", "-t", "#", "-C", "1",
        "-W", "3", check=False,
    )  # fmt: skip
    assert anonymous.returncode != 0
    assert "not authori" in (anonymous.stdout + anonymous.stderr).lower()
    # An agent may not write under another agent's id: the ACL drops it, so the monitor
    # never sees it, while the same message under the agent's own id arrives.
    (agent, *_) = society.containers("agent")
    env = dict(line.split("=", 1) for line in inspect(agent)["Config"]["Env"])
    password = env["SOCIETY_BROKER"].split(":")[2].split("@")[0]
    monitor = dict(
        line.split("=", 1) for line in society.env_file.read_text().splitlines() if "=" in line
    )["MQTT_MONITOR_PASSWORD"]

    def publish_and_read(client_id: str, topic: str) -> str:
        command = (
            f"mosquitto_sub -h 127.0.0.1 -u monitor -P {monitor} -t '{topic}' -C 1 -W 4 & "
            "sleep 1; "
            f"mosquitto_pub -h 127.0.0.1 -u agent -P {password} -i {client_id} -q 1 "
            f"-t '{topic}' -m probe; wait"
        )
        return run("docker", "exec", broker, "sh", "-c", command, check=False).stdout

    own = "society/cartpole/agents/probe-agent/telemetry"
    other = "society/cartpole/agents/someone-else/telemetry"
    assert publish_and_read("probe-agent", own).strip() == "probe"
    assert publish_and_read("probe-agent", other).strip() == ""


def test_the_coordinator_sees_three_agents_learning(society: Society) -> None:
    expected = {agent_id(c) for c in society.containers("agent")}
    first = society.metrics()
    assert metric_values(first, "society_agent_up") == dict.fromkeys(expected, 1.0)
    assert 'society_agents{state="online"} 3.0' in first
    assert "society_bus_connected 1.0" in first
    steps = metric_values(first, "society_agent_env_steps_total")
    assert set(steps) == expected

    def all_advanced() -> dict[str, float] | None:
        now = metric_values(society.metrics(), "society_agent_env_steps_total")
        return now if all(now[a] > steps[a] for a in expected) else None

    later = wait_until("every agent's steps grow", all_advanced, timeout=60)
    assert all(later[a] > steps[a] for a in expected)


def test_prometheus_scrapes_the_coordinator_and_loads_the_alert_rules(society: Society) -> None:
    (target,) = society.prometheus("/api/v1/targets")["activeTargets"]
    assert target["labels"]["job"] == "society-coordinator"
    assert target["scrapeUrl"] == "http://coordinator:9464/metrics"

    def scraped() -> list[Any] | None:
        result: list[Any] = society.prometheus("/api/v1/query", query="society_agent_up == 1")[
            "result"
        ]
        return result if len(result) == AGENTS else None

    assert target["health"] in {"up", "unknown"}
    series = wait_until("Prometheus has the 3 agents", scraped, timeout=60)
    agents = {s["metric"]["agent"] for s in series}
    assert agents == {agent_id(c) for c in society.containers("agent")}
    assert society.prometheus("/api/v1/targets")["activeTargets"][0]["health"] == "up"

    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    wanted = {r["alert"] for group in rules["groups"] for r in group["rules"]}
    loaded = society.prometheus("/api/v1/rules")["groups"]
    assert {r["name"] for group in loaded for r in group["rules"]} == wanted
    assert all(r["health"] == "ok" for group in loaded for r in group["rules"])
    # Everything is fine: no alert of the society fires.
    firing = [a for a in society.prometheus("/api/v1/alerts")["alerts"] if a["state"] == "firing"]
    assert firing == []


def test_our_image_runs_unprivileged_and_writes_only_its_volume(society: Society) -> None:
    for service in OUR_SERVICES:
        for container in society.containers(service):
            details = inspect(container)
            assert details["Config"]["User"] == "10001:10001"
            assert details["HostConfig"]["ReadonlyRootfs"] is True
            mounts = {m["Destination"]: m["Type"] for m in details["Mounts"]}
            assert mounts == {"/data": "volume"}, mounts
            table = run("docker", "top", container, "-o", "uid,pid").stdout.splitlines()[1:]
            uids = [row.split()[0] for row in table]
            assert uids, service
            assert set(uids) == {"10001"}, (service, uids)
            # Nothing written to the container's own layer; the root filesystem refuses.
            assert run("docker", "diff", container).stdout.strip() == "", service
            refused = run("docker", "exec", container, "touch", "/app/x", check=False)
            assert refused.returncode != 0
            assert "read-only file system" in refused.stderr.lower()


def test_a_killed_agent_resumes_from_its_volume(society: Society) -> None:
    container = society.containers("agent")[0]
    agent = agent_id(container)
    manifest = f"/data/society-data/agents/{agent}/checkpoint/checkpoint.json"

    def checkpointed() -> int | None:
        read = run("docker", "exec", container, "cat", manifest, check=False)
        return int(json.loads(read.stdout)["step"]) if read.returncode == 0 else None

    step = wait_until(f"{agent} writes a checkpoint", checkpointed, timeout=300)
    assert step >= CHECKPOINT_EVERY
    assert step % CHECKPOINT_EVERY == 0
    run("docker", "kill", container)  # SIGKILL: no clean shutdown, no last checkpoint
    assert inspect(container)["State"]["ExitCode"] == 137
    # The agents share one volume: another one reads what the killed agent left there (a
    # checkpoint newer than the one read above, if it wrote one in between).
    other = society.containers("agent")[0]
    assert other != container
    shown = run("docker", "exec", other, "cat", manifest).stdout
    checkpointed_after_kill = int(json.loads(shown)["step"])
    assert checkpointed_after_kill >= step
    restarted_at = time.time()
    run("docker", "start", container)
    assert agent_id(container) == agent

    def resumed() -> str | None:
        logs = run("docker", "logs", "--since", str(int(restarted_at) - 1), container)
        found = re.search(r"resumed at step (\d+)", logs.stdout + logs.stderr)
        return found.group(1) if found else None

    assert int(wait_until(f"{agent} resumes", resumed, timeout=120)) == checkpointed_after_kill

    def learning_again() -> float | None:
        metrics = society.metrics()
        up = metric_values(metrics, "society_agent_up").get(agent)
        steps = metric_values(metrics, "society_agent_env_steps_total").get(agent, 0.0)
        return steps if up == 1.0 and steps > checkpointed_after_kill else None

    wait_until(f"{agent} online and past step {checkpointed_after_kill}", learning_again, 120)

    def healthy() -> bool | None:
        return inspect(container)["State"]["Health"]["Status"] == "healthy" or None

    wait_until(f"{agent} healthy again", healthy, timeout=120)


def test_compose_down_leaves_nothing_running(society: Society) -> None:
    start = time.monotonic()
    society.compose("down", "--volumes", "--remove-orphans", timeout=180)
    print(f"\ncompose down: {time.monotonic() - start:.0f} s")
    assert society.containers(every=True) == []
    label = f"label=com.docker.compose.project={society.project}"
    assert run("docker", "network", "ls", "-q", "--filter", label).stdout.strip() == ""
    assert run("docker", "volume", "ls", "-q", "--filter", label).stdout.strip() == ""
