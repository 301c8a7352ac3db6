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

__all__ = ["ForeignBroker", "ForeignBrokerMissingError", "nats", "rabbitmq"]

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
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=folder, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads yet in this child
            )  # fmt: skip
        if not wait_for_port(self.url.host, port, timeout=90):
            self.stop()
            tail = self.log.read_text(errors="replace")[-2000:]
            msg = f"{name} did not open its MQTT port {port}:\n{tail}"
            raise RuntimeError(msg)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def nats(folder: Path) -> ForeignBroker:
    """nats-server with JetStream and its MQTT gateway (MQTT needs both)."""
    binary = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if binary is None:
        msg = "nats-server is not installed (Debian package nats-server)"
        raise ForeignBrokerMissingError(msg)
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
