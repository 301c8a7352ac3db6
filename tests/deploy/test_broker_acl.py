"""The production broker's access control, on a real Mosquitto (broker/mosquitto.conf, broker/acl).

MQTT 3.1.1 gives a publisher no sign that the broker dropped an unauthorised publish (the
PUBACK comes all the same), so "denied" is checked as "not delivered" to a subscriber that
may read the topic: each test ends with a message that IS allowed, sent after the forbidden
ones on the same connection, and only once it has arrived is the absence of the others
asserted (Mosquitto routes one connection's publishes in order).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest
from prometheus_client import CollectorRegistry

from agents._process import free_port
from agents.bus.client import BusClient
from agents.bus.codec import encode
from agents.bus.mqtt import MqttTransport, TlsFiles
from agents.bus.topics import Kind, Topics
from agents.bus.transport import Connection, ConnectOptions, RawMessage
from agents.bus.url import BrokerUrl, parse_broker_url
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.exceptions import BusAuthError, BusTlsError, ConfigError
from tests import factories
from tests.deploy.broker_setup import (
    BROKER_DIR,
    PASSWORDS,
    ProductionBroker,
    build_password_file,
    make_tls,
    render_production_config,
    start_mosquitto,
)
from tests.waiting import eventually

TOPICS = Topics("s")


class Received:
    """Everything a connection receives, in order, with a way to wait for one topic."""

    def __init__(self) -> None:
        self.messages: list[RawMessage] = []

    def topics(self) -> list[str]:
        return [message.topic for message in self.messages]

    async def wait_for(self, topic: str, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while topic not in self.topics():
            if loop.time() > deadline:
                pytest.fail(f"{topic} never arrived; got {self.topics()}")
            await asyncio.sleep(0.01)
        # The broker routes one connection's publishes in order; a moment for stragglers.
        await asyncio.sleep(0.2)


@asynccontextmanager
async def client(
    url: BrokerUrl, client_id: str, *subscriptions: str
) -> AsyncIterator[tuple[Connection, Received]]:
    """A connection through our own transport, receiving in the background."""
    received = Received()
    async with MqttTransport(url).connect(ConnectOptions(client_id, clean_session=True)) as conn:
        for topic_filter in subscriptions:
            await conn.subscribe(topic_filter, qos=1)

        async def receive() -> None:
            async for message in conn.messages():
                received.messages.append(message)

        task = asyncio.create_task(receive())
        try:
            yield conn, received
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def experience(agent: str, seq: int = 1) -> bytes:
    return encode(factories.experience(agent=agent, seq=seq))


# --- who may connect ------------------------------------------------------------------------


async def test_an_anonymous_client_is_refused_with_a_clear_error(
    production_broker: ProductionBroker,
) -> None:
    url = production_broker.url(None)
    with pytest.raises(BusAuthError) as refused:
        async with MqttTransport(url).connect(ConnectOptions("nobody")):
            pytest.fail("an anonymous client was let in")
    message = str(refused.value)
    assert str(url) in message
    assert "'nobody'" in message


async def test_wrong_credentials_name_the_broker_and_client_not_the_password(
    production_broker: ProductionBroker,
) -> None:
    for url in (
        production_broker.url("agent", "not-the-password"),
        production_broker.url("stranger", "agent-secret"),
    ):
        with pytest.raises(BusAuthError) as refused:
            async with MqttTransport(url).connect(ConnectOptions("a0")):
                pytest.fail(f"{url} was let in")
        message = str(refused.value)
        assert f"{production_broker.host}:{production_broker.port}" in message
        assert "'a0'" in message
        assert "refused" in message
        assert url.password is not None
        assert url.password not in message


async def test_a_bus_client_stops_on_refused_credentials_instead_of_retrying(
    production_broker: ProductionBroker,
) -> None:
    transport = MqttTransport(production_broker.url("agent", "wrong"))
    async with BusClient(transport, ConnectOptions("a0")) as bus:
        with pytest.raises(BusAuthError):
            await bus.wait_connected(timeout=10)
        assert bus.failed.is_set()


# --- what agents may do ---------------------------------------------------------------------


async def test_agent_a_cannot_publish_as_agent_b(production_broker: ProductionBroker) -> None:
    a0_topic = TOPICS.agent("a0", Kind.EXPERIENCE)
    a1_topic = TOPICS.agent("a1", Kind.EXPERIENCE)
    coordinator = production_broker.url("coordinator")
    agent = production_broker.url("agent")
    async with (
        client(coordinator, "s-coordinator", TOPICS.agents_filter(Kind.EXPERIENCE)) as (_, seen),
        client(agent, "a0") as (a0, _),
    ):
        await a0.publish(a1_topic, experience("a1"), qos=1, retain=False)  # as someone else
        await a0.publish(a0_topic, experience("a0"), qos=1, retain=False)  # as itself
        await seen.wait_for(a0_topic)
    assert seen.topics() == [a0_topic]


async def test_agents_read_peers_and_only_their_own_directives(
    production_broker: ProductionBroker,
) -> None:
    agent = production_broker.url("agent")
    subscriptions = (
        TOPICS.agents_filter(Kind.POLICY),
        TOPICS.agents_filter(Kind.EXPERIENCE),
        TOPICS.agents_filter(Kind.DIRECTIVE),  # asks for everyone's; gets only its own
    )
    directive = encode(factories.directive("a0"))
    async with (
        client(agent, "a0", *subscriptions) as (_, a0_seen),
        client(agent, "a1") as (a1, _),
        client(production_broker.url("coordinator"), "s-coordinator") as (coordinator, _),
    ):
        await a1.publish(
            TOPICS.agent("a1", Kind.POLICY), encode(factories.snapshot("a1")), qos=1, retain=True
        )
        await a1.publish(TOPICS.agent("a1", Kind.EXPERIENCE), experience("a1"), qos=1, retain=False)
        await coordinator.publish(
            TOPICS.agent("a1", Kind.DIRECTIVE),
            encode(factories.directive("a1")),
            qos=1,
            retain=False,
        )
        await coordinator.publish(
            TOPICS.agent("a0", Kind.DIRECTIVE), directive, qos=1, retain=False
        )
        await a0_seen.wait_for(TOPICS.agent("a0", Kind.DIRECTIVE))
        # Clean up the retained snapshot for the other tests of this module.
        await a1.publish(TOPICS.agent("a1", Kind.POLICY), b"", qos=1, retain=True)
    assert set(a0_seen.topics()) == {
        TOPICS.agent("a1", Kind.POLICY),
        TOPICS.agent("a1", Kind.EXPERIENCE),
        TOPICS.agent("a0", Kind.DIRECTIVE),
    }


async def test_only_the_coordinator_writes_directives_and_coordinator_topics(
    production_broker: ProductionBroker,
) -> None:
    directive_a0 = TOPICS.agent("a0", Kind.DIRECTIVE)
    leaderboard = TOPICS.coordinator(Kind.LEADERBOARD)
    evaluations = TOPICS.coordinator(Kind.EVALUATION)
    forged = [
        (directive_a0, encode(factories.directive("a0"))),  # an agent directing itself
        (TOPICS.agent("a1", Kind.DIRECTIVE), encode(factories.directive("a1"))),
        (leaderboard, encode(factories.leaderboard())),
        (evaluations, encode(factories.evaluation("a0"))),
    ]
    async with (
        client(production_broker.url("monitor"), "dashboard", "society/s/#") as (_, seen),
        client(production_broker.url("agent"), "a0") as (a0, _),
        client(production_broker.url("monitor"), "a0-observer") as (observer, _),
        client(production_broker.url("coordinator"), "s-coordinator") as (coordinator, _),
    ):
        for publisher in (a0, observer):
            for topic, payload in forged:
                await publisher.publish(topic, payload, qos=1, retain=False)
        # The coordinator may: a directive, then an evaluation (the marker to wait for).
        await coordinator.publish(directive_a0, forged[0][1], qos=1, retain=False)
        await coordinator.publish(evaluations, forged[3][1], qos=1, retain=False)
        await seen.wait_for(evaluations)
    assert seen.topics() == [directive_a0, evaluations]


async def test_evaluators_take_tasks_and_answer_only_as_themselves(
    production_broker: ProductionBroker,
) -> None:
    """An evaluator (an `agent` user, client id e0) and the coordinator, through the ACL."""
    presence, result = TOPICS.evaluator("e0", Kind.PRESENCE), TOPICS.evaluator("e0", Kind.RESULT)
    task_e0, task_e1 = TOPICS.evaluator("e0", Kind.TASK), TOPICS.evaluator("e1", Kind.TASK)
    forged_result = TOPICS.evaluator("e1", Kind.RESULT)
    task = encode(factories.task("e0"))
    async with (
        client(
            production_broker.url("coordinator"), "s-coordinator",
            TOPICS.evaluators_filter(Kind.PRESENCE), TOPICS.evaluators_filter(Kind.RESULT),
        ) as (coordinator, heard),
        client(production_broker.url("agent"), "e0", task_e0, task_e1) as (e0, given),
    ):  # fmt: skip
        await e0.publish(forged_result, encode(factories.task_result("e1")), qos=1, retain=False)
        await e0.publish(task_e1, task, qos=1, retain=False)  # tasks are the coordinator's
        await e0.publish(presence, encode(factories.presence("e0")), qos=1, retain=False)
        await e0.publish(result, encode(factories.task_result("e0")), qos=1, retain=False)
        await heard.wait_for(result)
        await coordinator.publish(task_e1, task, qos=1, retain=False)  # not e0's to read
        await coordinator.publish(task_e0, task, qos=1, retain=False)
        await given.wait_for(task_e0)
    assert heard.topics() == [presence, result]
    assert given.topics() == [task_e0]


async def test_home_assistant_topics_are_confined_too(production_broker: ProductionBroker) -> None:
    """An agent publishes its own discovery and availability; the coordinator may mark it
    offline for Home Assistant after its Last Will; no agent may do so for another."""
    own = "homeassistant/climate/a0/thermostat/config"
    other = "homeassistant/climate/a1/thermostat/config"
    availability = "society/s/agents/a0/ha/availability"
    async with (
        client(production_broker.url("monitor"), "ha", "homeassistant/#", "society/s/#") as (
            _,
            seen,
        ),
        client(production_broker.url("agent"), "a0") as (a0, _),
        client(production_broker.url("agent"), "a1") as (a1, _),
        client(production_broker.url("coordinator"), "s-coordinator") as (coordinator, _),
    ):
        await a0.publish(other, b"{}", qos=1, retain=False)
        await a0.publish(own, b"{}", qos=1, retain=False)
        await a0.publish(availability, b"online", qos=1, retain=False)
        await seen.wait_for(availability)
        await a1.publish(availability, b"offline", qos=1, retain=False)
        await a1.publish(TOPICS.agent("a1", Kind.TELEMETRY), b"marker", qos=1, retain=False)
        await seen.wait_for(TOPICS.agent("a1", Kind.TELEMETRY))
        await coordinator.publish(availability, b"offline", qos=1, retain=False)
        await eventually(lambda: seen.topics().count(availability) == 2)
    assert seen.topics() == [own, availability, TOPICS.agent("a1", Kind.TELEMETRY), availability]
    assert [m.payload for m in seen.messages if m.topic == availability] == [b"online", b"offline"]


_DIE_WITH_A_WILL = """
import os, sys, time
import paho.mqtt.client as mqtt
host, port, user, password, client_id, will_topic = sys.argv[1:]
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
client.username_pw_set(user, password)
client.will_set(will_topic, b"offline", qos=1, retain=False)
client.connect(host, int(port))
client.loop_start()
deadline = time.monotonic() + 10
while not client.is_connected() and time.monotonic() < deadline:
    time.sleep(0.01)
os._exit(0 if client.is_connected() else 3)  # no DISCONNECT: the broker sends the will
"""


def die_with_a_will(url: BrokerUrl, client_id: str, will_topic: str) -> int:
    """A client that connects with a Last Will and dies without saying goodbye."""
    assert url.username is not None
    assert url.password is not None
    args = [url.host, str(url.port), url.username, url.password, client_id, will_topic]
    done = subprocess.run(
        [sys.executable, "-c", _DIE_WITH_A_WILL, *args], capture_output=True, check=False
    )
    return done.returncode


async def test_a_will_on_another_agents_status_is_not_published(
    production_broker: ProductionBroker,
) -> None:
    """A Last Will is checked like any publish: a forged 'offline' for a1 never arrives."""
    agent = production_broker.url("agent")
    a1_status, a2_status = TOPICS.agent("a1", Kind.STATUS), TOPICS.agent("a2", Kind.STATUS)
    async with client(production_broker.url("coordinator"), "s-coordinator", "society/s/#") as (
        _,
        seen,
    ):
        forged = await asyncio.to_thread(die_with_a_will, agent, "a0", a1_status)
        assert forged in {0, 3}  # let in with its will, or refused: either way not published
        honest = await asyncio.to_thread(die_with_a_will, agent, "a2", a2_status)
        assert honest == 0
        await seen.wait_for(a2_status)
    assert seen.topics() == [a2_status]


async def test_the_real_coordinator_and_an_agent_session_work_through_the_acl(
    production_broker: ProductionBroker, tmp_path: Path
) -> None:
    """Every topic the coordinator subscribes to, and an agent's own, pass the ACL."""
    coordinator = Coordinator(
        CoordinatorConfig(society="s", data_dir=tmp_path / "coordinator"),
        MqttTransport(production_broker.url("coordinator")),
        metrics_registry=CollectorRegistry(),
    )
    task = asyncio.create_task(coordinator.run())
    try:
        await eventually(lambda: coordinator.bus is not None and coordinator.bus.connected.is_set())
        status_topic = TOPICS.agent("a7", Kind.STATUS)
        async with client(production_broker.url("agent"), "a7") as (agent, _):
            await agent.publish(status_topic, encode(factories.status("a7")), qos=1, retain=True)
            await agent.publish(
                TOPICS.agent("a7", Kind.TELEMETRY), encode(factories.telemetry("a7")),
                qos=1, retain=False,
            )  # fmt: skip
            for seq in (1, 2):
                await agent.publish(
                    TOPICS.agent("a7", Kind.EXPERIENCE), experience("a7", seq),
                    qos=1, retain=False,
                )  # fmt: skip
            await eventually(
                lambda: (
                    "a7" in coordinator.roster.agents
                    and coordinator.roster.agents["a7"].experience_batches_received == 2
                )
            )
            record = coordinator.roster.agents["a7"]
            assert record.state == "online"
            assert record.env_steps == factories.telemetry("a7").env_steps
            assert coordinator.bus is not None
            assert coordinator.bus.fatal is None
            assert sum(coordinator.inbox.stats.rejected.values()) == 0
            await agent.publish(status_topic, b"", qos=1, retain=True)
    finally:
        coordinator.stop()
        await asyncio.wait_for(task, 30)


# --- TLS ------------------------------------------------------------------------------------


async def test_tls_listener_with_a_certificate_from_our_own_ca(
    production_broker: ProductionBroker,
) -> None:
    broker = production_broker
    context = ssl.create_default_context(cafile=str(broker.tls.ca_cert))
    topic = TOPICS.agent("a0", Kind.TELEMETRY)
    payload = encode(factories.telemetry("a0"))

    def tls_client(user: str, client_id: str) -> aiomqtt.Client:
        url = broker.tls_url(user)
        return aiomqtt.Client(
            url.host, url.port, identifier=client_id, username=url.username,
            password=url.password, tls_context=context,
        )  # fmt: skip

    received: list[str] = []
    async with tls_client("agent", "a0") as a0, tls_client("monitor", "dashboard") as monitor:
        await monitor.subscribe(TOPICS.agents_filter(Kind.TELEMETRY), qos=1)
        # The ACL holds on the TLS listener too: a0 cannot publish as a1.
        await a0.publish(TOPICS.agent("a1", Kind.TELEMETRY), payload, qos=1)
        await a0.publish(topic, payload, qos=1)
        async with asyncio.timeout(5):
            async for message in monitor.messages:
                received.append(str(message.topic))
                assert message.payload == payload
                break
    assert received == [topic]


async def test_our_transport_refuses_a_broker_certificate_it_cannot_verify(
    production_broker: ProductionBroker,
) -> None:
    """mqtts:// verifies the broker against the system's CAs; our test CA is not one."""
    url = production_broker.tls_url("agent")
    # Not a connection error that the reconnect loop retries forever: a refusal, for good.
    with pytest.raises(BusTlsError) as failed:
        async with MqttTransport(url).connect(ConnectOptions("a0")):
            pytest.fail("connected to a broker whose certificate it cannot verify")
    assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value)
    assert str(url) in str(failed.value)
    assert "--tls-ca" in str(failed.value)


async def test_our_transport_with_a_ca_file(production_broker: ProductionBroker) -> None:
    """With the CA given (--tls-ca, SOCIETY_TLS_CA), mqtts:// works with a private CA."""
    transport = MqttTransport(
        production_broker.tls_url("agent"), tls=TlsFiles(ca_file=production_broker.tls.ca_cert)
    )
    async with transport.connect(ConnectOptions("a0")) as connection:
        await connection.publish(
            TOPICS.agent("a0", Kind.TELEMETRY), encode(factories.telemetry("a0")),
            qos=1, retain=False,
        )  # fmt: skip


@pytest.mark.parametrize("command", ["agent", "coordinator"])
def test_a_broker_certificate_that_cannot_be_verified_stops_a_process_loudly(
    production_broker: ProductionBroker, tmp_path: Path, command: str
) -> None:
    """No CA given: one line naming the certificate problem and a non-zero exit, at once.

    (It used to log the error at DEBUG, learn its whole budget offline and exit 0.)
    """
    user = "agent" if command == "agent" else "coordinator"
    url = f"mqtts://{user}:{PASSWORDS[user]}@{production_broker.host}:{production_broker.tls_port}"
    extra = ["--steps", "100000"] if command == "agent" else ["--metrics-port", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "agents", command, "--broker", url,
         "--data-dir", str(tmp_path / command), *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"society: {command} failed: broker mqtts://")
    assert "TLS certificate cannot be verified" in last
    assert "--tls-ca" in last
    assert "Traceback" not in done.stderr


def test_a_tls_file_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    url = parse_broker_url("mqtts://127.0.0.1:8883")
    with pytest.raises(ConfigError, match="TLS files"):
        MqttTransport(url, tls=TlsFiles(ca_file=tmp_path / "missing.pem"))


# --- the stricter variant: one user per agent -----------------------------------------------


async def test_one_user_per_agent_cannot_choose_its_agent_id(tmp_path: Path) -> None:
    """broker/acl.per-agent with use_username_as_clientid: the user name IS the agent id.

    User a0 connecting with the client id "a1" still speaks only for a0, and does not take
    over a1's session.
    """
    host = "127.0.0.1"
    port, tls_port = free_port(host), free_port(host)
    users = tmp_path / "users"
    users.mkdir()
    for user in ("a0", "a1"):
        (users / user).write_text(f"{user}-secret\n")
    build_password_file(tmp_path / "passwd", {"coordinator": "coordinator-secret"}, users)
    tls = make_tls(tmp_path / "tls", host)
    config = render_production_config(tmp_path, host=host, port=port, tls_port=tls_port, tls=tls)
    config = config.replace(str(BROKER_DIR / "acl"), str(BROKER_DIR / "acl.per-agent"))
    # A listener option: after each listener line.
    config = re.sub(
        r"^(listener .*)$", r"\1\nuse_username_as_clientid true", config, flags=re.MULTILINE
    )
    (tmp_path / "mosquitto.conf").write_text(config)
    process = start_mosquitto(tmp_path / "mosquitto.conf", port, tls_port, host=host)

    def as_user(user: str) -> BrokerUrl:
        return BrokerUrl(host=host, port=port, username=user, password=f"{user}-secret")

    a0_topic = TOPICS.agent("a0", Kind.EXPERIENCE)
    a1_topic = TOPICS.agent("a1", Kind.EXPERIENCE)
    try:
        async with (
            client(as_user("coordinator"), "x", TOPICS.agents_filter(Kind.EXPERIENCE)) as (_, seen),
            client(as_user("a1"), "a1", TOPICS.agents_filter(Kind.POLICY)) as (a1, _),
            client(as_user("a0"), "a1") as (impostor, _),  # claims to be a1
        ):
            await impostor.publish(a1_topic, experience("a1"), qos=1, retain=False)
            await impostor.publish(a0_topic, experience("a0"), qos=1, retain=False)
            await seen.wait_for(a0_topic)
            # a1's own session survived the impostor's "a1" client id, and it may publish.
            await a1.publish(a1_topic, experience("a1", 2), qos=1, retain=False)
            await seen.wait_for(a1_topic)
    finally:
        process.kill()
        process.wait()
    assert seen.topics() == [a0_topic, a1_topic]
    log = (tmp_path / "mosquitto.log").read_text(errors="replace")
    assert "Client a1 already connected" not in log
