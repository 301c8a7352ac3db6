"""Other MQTT brokers than Mosquitto, each a process of the tests' own on free ports.

The bus uses only MQTT 3.1.1 features (QoS 1, retained messages, Last Will, persistent
sessions), so RabbitMQ's MQTT plugin and NATS's MQTT gateway must serve as well: that is the
path past one machine (docs/scaling.md). These brokers are started here the way an operator
would, from the Debian packages' binaries, with a configuration written for the test; where a
server is not installed the tests skip, saying which.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from agents._process import die_with_parent, free_port, wait_for_port
from agents.bus.url import BrokerUrl

__all__ = [
    "NATS_CLUSTER_NODE",
    "ForeignBroker",
    "ForeignBrokerMissingError",
    "nats",
    "nats_cluster",
    "rabbitmq",
]

_RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the script that runs as the caller


class ForeignBrokerMissingError(Exception):
    """The server is not installed here."""


class ForeignBroker:
    """A broker process in its own process group (the servers start children of their own)."""

    def __init__(
        self, name: str, command: list[str], port: int, folder: Path, env: dict[str, str]
    ) -> None:
        self.name = name
        self.url = BrokerUrl(host="127.0.0.1", port=port)
        self.log = folder / f"{name}.log"
        self._command, self._folder, self._env = command, folder, env
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start the server (again, after :meth:`kill`) and wait for its MQTT port."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self._command, cwd=self._folder, env={**os.environ, **self._env},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads yet in this child
            )  # fmt: skip
        if not wait_for_port(self.url.host, self.url.port, timeout=90):
            self.stop()
            tail = self.log.read_text(errors="replace")[-2000:]
            msg = f"{self.name} did not open its MQTT port {self.url.port}:\n{tail}"
            raise RuntimeError(msg)

    def kill(self) -> None:
        """SIGKILL, as a crashed machine: no clean shutdown, no goodbye to the cluster."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _nats_server() -> str:
    binary = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if binary is None:
        msg = "nats-server is not installed (Debian package nats-server)"
        raise ForeignBrokerMissingError(msg)
    return binary


def nats(folder: Path) -> ForeignBroker:
    """nats-server with JetStream and its MQTT gateway (MQTT needs both)."""
    binary = _nats_server()
    port = free_port()
    config = folder / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{free_port()}\n"
        "server_name: society_test\n"
        f'jetstream {{ store_dir: "{folder / "jetstream"}" }}\n'
        # Unacknowledged QoS 1 messages come again after ack_wait (30 s by default), not on
        # reconnecting; a short one keeps the redelivery test quick.
        f'mqtt {{ listen: 127.0.0.1:{port}, ack_wait: "2s" }}\n'
    )
    return ForeignBroker("nats", [binary, "-c", str(config)], port, folder, {})


def rabbitmq(folder: Path) -> ForeignBroker:
    """A RabbitMQ node of its own (name, ports, database) with the MQTT plugin."""
    plugin_dirs = list(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/plugins"))
    has_plugin = any(any(d.glob("rabbitmq_mqtt-*")) for d in plugin_dirs)
    if not Path(_RABBITMQ_SERVER).exists() or not has_plugin:
        msg = "RabbitMQ with its MQTT plugin is not installed (Debian package rabbitmq-server)"
        raise ForeignBrokerMissingError(msg)
    port, amqp_port, dist_port = free_port(), free_port(), free_port()
    (folder / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{amqp_port}\n"
        f"mqtt.listeners.tcp.default = 127.0.0.1:{port}\n"
        "mqtt.allow_anonymous = true\n"
        "loopback_users = none\n"
        "log.file = false\n"
        "log.console = true\n"
        "log.console.level = warning\n"
    )
    (folder / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
    env = {
        "RABBITMQ_NODENAME": f"society-test-{port}@localhost",
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "HOME": str(folder),  # the Erlang cookie of this node
    }
    return ForeignBroker("rabbitmq", [_RABBITMQ_SERVER], port, folder, env)


#: The configuration every node of a NATS cluster runs, as shipped (docs/deployment.md).
NATS_CLUSTER_NODE = Path(__file__).resolve().parents[2] / "broker" / "nats" / "cluster-node.conf"


def nats_cluster(folder: Path, nodes: int = 3) -> list[ForeignBroker]:
    """A NATS cluster on loopback ports: ``nodes`` servers, each with its own JetStream folder.

    Every node runs the shipped ``broker/nats/cluster-node.conf``; what differs between them
    comes from the environment, as an operator would set it. Returns once every node's MQTT
    port is open; until JetStream has elected its leader a node refuses MQTT connections, and
    clients retry as the bus does.
    """
    if nodes != 3:  # the shipped file names three routes
        msg = "the shipped cluster configuration is for three nodes"
        raise ValueError(msg)
    binary = _nats_server()
    cluster_ports = [free_port() for _ in range(nodes)]
    routes = {
        f"ROUTE_{i}": f"nats-route://127.0.0.1:{port}" for i, port in enumerate(cluster_ports)
    }
    started: list[ForeignBroker] = []
    try:
        for i, cluster_port in enumerate(cluster_ports):
            node = folder / f"n{i}"
            node.mkdir(parents=True, exist_ok=True)
            mqtt_port = free_port()
            env = {
                "NODE_NAME": f"n{i}",
                "CLIENT_LISTEN": f"127.0.0.1:{free_port()}",
                "CLUSTER_LISTEN": f"127.0.0.1:{cluster_port}",
                "MQTT_LISTEN": f"127.0.0.1:{mqtt_port}",
                "STORE_DIR": str(node / "jetstream"),
                **routes,
            }
            command = [binary, "-c", str(NATS_CLUSTER_NODE)]
            started.append(ForeignBroker(f"nats-n{i}", command, mqtt_port, node, env))
    except BaseException:
        for broker in started:
            broker.stop()
        raise
    return started
