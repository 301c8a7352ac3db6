"""deploy/healthcheck.py, the containers' healthcheck, run as compose and Kubernetes run it.

The agent check goes through the production broker with the agent's own credentials, so it
also shows that the ACL lets an agent container read its own status and telemetry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from agents._process import free_port
from agents.broker.managed import ManagedBroker
from agents.bus.codec import encode
from agents.bus.mqtt import MqttTransport
from agents.bus.topics import Kind, Topics
from agents.bus.transport import ConnectOptions
from agents.bus.url import BrokerUrl
from tests import factories
from tests.deploy.broker_setup import ProductionBroker
from tests.deploy.live import connected_coordinator

ROOT = Path(__file__).parents[2]
TOPICS = Topics("s")


def broker_url(url: BrokerUrl) -> str:
    return f"mqtt://{url.username}:{url.password}@{url.host}:{url.port}"


async def healthcheck(process: str, env: dict[str, str], timeout: float = 3.0) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SOCIETY_")}
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "deploy" / "healthcheck.py"), process,
        "--timeout", str(timeout), env={**clean, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(child.communicate(), timeout + 30)
    except TimeoutError:
        child.kill()
        await child.wait()
        pytest.fail(f"the healthcheck did not end within {timeout + 30:.0f} s")
    assert child.returncode is not None
    return child.returncode, stderr.decode()


@contextlib.asynccontextmanager
async def agent_a0(broker: ProductionBroker, state: str | None) -> AsyncIterator[None]:
    """Agent a0 on the bus: its retained status (if any) and telemetry every 0.2 s."""
    async with MqttTransport(broker.url("agent")).connect(
        ConnectOptions("a0", clean_session=True)
    ) as connection:
        status = TOPICS.agent("a0", Kind.STATUS)
        if state is not None:
            payload = encode(factories.status("a0", state))
            await connection.publish(status, payload, qos=1, retain=True)

        stop = asyncio.Event()

        async def telemetry() -> None:
            # Stopped between two publishes, never cancelled in the middle of one: a publish
            # cancelled half-way can leave the client waiting forever on the next.
            while not stop.is_set():
                await connection.publish(
                    TOPICS.agent("a0", Kind.TELEMETRY), encode(factories.telemetry("a0")),
                    qos=0, retain=False,
                )  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)

        task = asyncio.create_task(telemetry())
        try:
            yield
        finally:
            stop.set()
            await task
            await connection.publish(status, b"", qos=1, retain=True)


async def test_agent_healthcheck(production_broker: ProductionBroker) -> None:
    env = {
        "SOCIETY_BROKER": broker_url(production_broker.url("agent")),
        "SOCIETY_NAME": "s",
        "SOCIETY_AGENT_ID": "a0",
    }
    code, message = await healthcheck("agent", env, timeout=1.5)
    assert code == 1
    assert "no status and telemetry within 1.5 s" in message
    async with agent_a0(production_broker, "online"):
        assert await healthcheck("agent", env) == (0, "")
    async with agent_a0(production_broker, "offline"):
        code, message = await healthcheck("agent", env)
    assert code == 1
    assert "agent a0 is offline" in message
    code, message = await healthcheck(
        "agent", {**env, "SOCIETY_BROKER": broker_url(production_broker.url("agent", "wrong"))}
    )
    assert code == 1
    assert "refused client 'a0-health'" in message


async def test_coordinator_healthcheck(mosquitto: ManagedBroker, tmp_path: Path) -> None:
    async with connected_coordinator(mosquitto, tmp_path) as coordinator:
        assert coordinator.bus is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        env = {"SOCIETY_METRICS_PORT": str(coordinator.metrics_port)}
        assert await healthcheck("coordinator", env) == (0, "")
        mosquitto.kill()  # the coordinator loses the broker
        while coordinator.bus.connected.is_set():
            assert loop.time() < deadline
            await asyncio.sleep(0.02)
        code, message = await healthcheck("coordinator", env)
        assert code == 1
        assert "not connected to the broker" in message
    code, message = await healthcheck("coordinator", {"SOCIETY_METRICS_PORT": str(free_port())})
    assert code == 1
    assert "unhealthy: coordinator:" in message


async def test_the_brokers_compose_healthcheck(production_broker: ProductionBroker) -> None:
    """The mosquitto service's check, as compose runs it, against the production ACL."""
    if shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto_sub not installed (Debian package mosquitto-clients)")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kind, command = compose["services"]["mosquitto"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    command = command.replace("$$", "$").replace(
        "-h 127.0.0.1", f"-h {production_broker.host} -p {production_broker.port}"
    )
    for password, healthy in (("monitor-secret", True), ("wrong", False)):
        env = {"PATH": os.environ["PATH"], "MQTT_MONITOR_PASSWORD": password}
        child = await asyncio.create_subprocess_exec(
            "sh", "-c", command, env=env, stderr=asyncio.subprocess.DEVNULL
        )
        await asyncio.wait_for(child.wait(), 10)
        assert (child.returncode == 0) is healthy, (password, child.returncode)
