"""The broker configurations in broker/ and the generated one say the same about limits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agents.broker.mosquitto_conf import (
    MAX_PACKET_SIZE,
    MAX_QUEUED_BYTES,
    MAX_QUEUED_MESSAGES,
    MosquittoSettings,
)
from agents.bus.codec import MAX_PAYLOAD_BYTES

ROOT = Path(__file__).parents[1]


def options(text: str) -> dict[str, str]:
    found = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition(" ")
            found[key] = value.strip()
    return found


def test_generated_config_raises_the_limits_that_lose_messages(tmp_path: Path) -> None:
    generated = options(MosquittoSettings(port=1234, data_dir=tmp_path).render())
    assert int(generated["max_queued_messages"]) == MAX_QUEUED_MESSAGES > 1000
    assert int(generated["max_queued_bytes"]) == MAX_QUEUED_BYTES
    assert generated["persistence"] == "true"
    assert int(generated["max_packet_size"]) == MAX_PACKET_SIZE
    # The broker never refuses a payload the codec accepts.
    assert max(MAX_PAYLOAD_BYTES.values()) + 65_536 < MAX_PACKET_SIZE
    assert generated["listener"] == "1234 127.0.0.1"
    assert re.fullmatch(r"\w[\w.-]*", generated["user"])


@pytest.mark.parametrize("config", ["mosquitto.dev.conf", "mosquitto.conf"])
def test_the_shipped_configs_have_the_managed_brokers_limits(config: str, tmp_path: Path) -> None:
    """The limits that keep acknowledged messages from being dropped are the same everywhere."""
    shipped = options((ROOT / "broker" / config).read_text())
    generated = options(MosquittoSettings(port=1883, data_dir=tmp_path).render())
    same = (
        "max_queued_messages",
        "max_queued_bytes",
        "max_packet_size",
        "max_inflight_messages",
        "persistence",
        "persistent_client_expiration",
    )
    for key in same:
        assert shipped[key] == generated[key], key
