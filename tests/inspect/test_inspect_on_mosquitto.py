"""``society inspect`` as a user runs it, against a real Mosquitto: real messages and garbage."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import paho.mqtt.publish as mqtt_publish
import pytest

from agents.broker.managed import ManagedBroker
from agents.bus.codec import encode
from agents.bus.schemas import Message
from agents.bus.topics import Kind, Topics
from tests import factories

pytestmark = pytest.mark.broker

TOPICS = Topics("home")


class Inspector:
    """A ``society inspect`` subprocess whose output is read on threads (no pipe stalls)."""

    def __init__(self, broker: ManagedBroker, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agents", "inspect", "--broker", str(broker.url), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self.listening = threading.Event()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout.put(line)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            if "inspecting society/" in line:
                self.listening.set()

    def wait_listening(self, timeout: float = 20.0) -> None:
        if not self.listening.wait(timeout):
            self.process.kill()
            pytest.fail(f"the inspector did not subscribe: {''.join(self.stderr)}")

    def line(self, timeout: float = 10.0) -> str:
        try:
            return self.stdout.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no output from the inspector: {''.join(self.stderr)}")

    def finish(self, timeout: float = 20.0) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        rest = []
        while not self.stdout.empty():
            rest.append(self.stdout.get())
        return code, "".join(rest)


@contextmanager
def inspector(broker: ManagedBroker, *args: str) -> Iterator[Inspector]:
    running = Inspector(broker, *args)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def publish(broker: ManagedBroker, messages: list[tuple[str, bytes]]) -> None:
    mqtt_publish.multiple(
        [{"topic": topic, "payload": payload, "qos": 1} for topic, payload in messages],
        hostname=broker.url.host,
        port=broker.url.port,
    )


def message(kind: Kind, body: Message, agent: str | None = "a0") -> tuple[str, bytes]:
    topic = TOPICS.coordinator(kind) if agent is None else TOPICS.agent(agent, kind)
    return topic, encode(body)


def test_json_lines_of_real_messages_and_a_rejected_one(mosquitto: ManagedBroker) -> None:
    snapshot = factories.snapshot(version=2)
    sent = [
        message(Kind.STATUS, factories.status()),
        message(Kind.EXPERIENCE, factories.experience(seq=5, rows=8)),
        message(Kind.POLICY, snapshot),
        message(Kind.TELEMETRY, factories.telemetry()),
        message(Kind.EVALUATION, factories.evaluation(version=2), agent=None),
        (TOPICS.agent("a0", Kind.EXPERIENCE), b"\xc1 this is not MessagePack"),
        message(Kind.DIRECTIVE, factories.directive()),
    ]
    with inspector(mosquitto, "--society", "home", "--json", "--count", str(len(sent))) as run:
        run.wait_listening()
        publish(mosquitto, sent)
        code, stdout = run.finish()
    assert code == 0, "".join(run.stderr)
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert len(lines) == len(sent)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        assert {"ts", "topic", "society", "agent", "kind", "bytes", "rejected"} <= set(line)
        assert line["society"] == "home"
        assert line["agent"] == "a0"
        by_kind.setdefault(line["kind"], []).append(line)
    assert by_kind["status"][0]["state"] == "online"
    good, bad = sorted(by_kind["experience"], key=lambda line: line["rejected"])
    assert (good["seq"], good["rows"], good["reward_sum"]) == (5, 8, 8.0)
    assert good["bytes"] == len(sent[1][1])
    assert bad["rejected"] is True
    assert bad["reason"] == "malformed"
    assert bad["error"]
    policy = by_kind["policy"][0]
    assert (policy["version"], policy["step"], policy["algo"]) == (2, 2000, "ppo")
    assert policy["tensors"] == 3
    assert policy["digest"] == snapshot.digest[:12]
    assert by_kind["telemetry"][0]["steps_per_second"] == 800.5
    evaluation = by_kind["evaluation"][0]
    assert (evaluation["version"], evaluation["mean_return"]) == (2, 100.0)
    assert by_kind["directive"][0]["action"] == "snapshot"


def test_kinds_filter_table_output_and_sigterm(mosquitto: ManagedBroker) -> None:
    other = msgspec.structs.replace(factories.status(agent="b1"), env_id="other")
    with inspector(mosquitto, "--kinds", "status") as run:
        run.wait_listening()
        publish(mosquitto, [
            message(Kind.EXPERIENCE, factories.experience(seq=1)),
            message(Kind.STATUS, other, agent="b1"),
        ])  # fmt: skip
        # The table's header and the status row, and nothing for the filtered experience.
        header, row = run.line(), run.line()
        run.process.send_signal(signal.SIGTERM)
        code, rest = run.finish()
    assert code == 0, "".join(run.stderr)
    assert header.split()[:4] == ["TIME", "SOCIETY", "AGENT", "KIND"]
    assert "b1" in row
    assert "status" in row
    assert "state=online" in row
    assert "experience" not in row + rest
