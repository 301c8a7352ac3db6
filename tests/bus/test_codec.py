"""Encoding and validating decoding: every kind round-trips; every defect has its reason."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest

from agents.bus.arrays import WIRE_DTYPES, from_wire, to_wire
from agents.bus.codec import MAX_PAYLOAD_BYTES, REJECT_REASONS, decode, decode_as, encode, kind_of
from agents.bus.schemas import SCHEMA_VERSION, Message, PolicySnapshot
from agents.bus.topics import Kind
from agents.exceptions import ConfigError, MessageRejected
from tests import factories


def as_dict(message: Message) -> dict[str, Any]:
    data = msgspec.to_builtins(message, builtin_types=(bytes,))
    assert isinstance(data, dict)
    return data


def pack(data: Any) -> bytes:
    return msgspec.msgpack.encode(data)


def reason(kind: Kind, payload: bytes) -> str:
    with pytest.raises(MessageRejected) as info:
        decode(kind, payload)
    assert info.value.reason in REJECT_REASONS
    return info.value.reason


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_round_trips(kind: Kind) -> None:
    message = factories.BY_KIND[kind]()
    payload = encode(message)
    assert decode(kind, payload) == message
    assert kind_of(message) is kind
    # Plain MessagePack: any client can read it, and the kind and schema are in it.
    raw = msgspec.msgpack.decode(payload)
    assert raw["kind"] == type(message).__struct_config__.tag
    assert raw["schema"] == SCHEMA_VERSION


@pytest.mark.parametrize("kind", list(Kind))
def test_wrong_kind_for_topic_is_a_schema_error(kind: Kind) -> None:
    other = Kind.STATUS if kind is not Kind.STATUS else Kind.TELEMETRY
    assert reason(kind, encode(factories.BY_KIND[other]())) == "schema"


def test_decode_as_narrows_the_type() -> None:
    message = decode_as(PolicySnapshot, encode(factories.snapshot()))
    assert message.version == 1


def test_not_msgpack_is_malformed() -> None:
    assert reason(Kind.STATUS, b"\xc1\xc1\xc1") == "malformed"
    assert reason(Kind.STATUS, b"") == "malformed"


def test_truncated_payload_is_malformed() -> None:
    payload = encode(factories.snapshot())
    assert reason(Kind.POLICY, payload[: len(payload) // 2]) == "malformed"


@pytest.mark.parametrize("kind", list(Kind))
def test_oversized_payload_is_refused_before_parsing(kind: Kind) -> None:
    assert reason(kind, b"\x00" * (MAX_PAYLOAD_BYTES[kind] + 1)) == "too_large"


def test_encode_refuses_what_receivers_would_refuse() -> None:
    big = np.zeros(5_000_000, dtype=np.float32)  # 20 MB > 16 MiB
    wire = to_wire(big)
    message = factories.snapshot()
    tensors = [msgspec.structs.replace(message.tensors[0], shape=wire.shape, data=wire.data)]
    with pytest.raises(ConfigError, match="exceeds"):
        encode(msgspec.structs.replace(message, tensors=tensors))


def test_unknown_field_is_a_schema_error() -> None:
    data = as_dict(factories.status())
    data["surprise"] = 1
    assert reason(Kind.STATUS, pack(data)) == "schema"


def test_missing_field_is_a_schema_error() -> None:
    data = as_dict(factories.telemetry())
    del data["env_steps"]
    assert reason(Kind.TELEMETRY, pack(data)) == "schema"


def test_wrong_type_is_a_schema_error() -> None:
    data = as_dict(factories.experience())
    data["seq"] = "one"
    assert reason(Kind.EXPERIENCE, pack(data)) == "schema"


def test_an_integer_beyond_64_bits_signed_is_a_schema_error() -> None:
    # MessagePack carries up to 2**64 - 1; SQLite (the coordinator's history) stores 2**63 - 1.
    data = as_dict(factories.experience())
    data["seq"] = 2**63 - 1
    decode(Kind.EXPERIENCE, pack(data))
    data["seq"] = 2**63
    assert reason(Kind.EXPERIENCE, pack(data)) == "schema"


def test_other_schema_version_is_named_as_such() -> None:
    data = as_dict(factories.status())
    data["schema"] = SCHEMA_VERSION + 1
    assert reason(Kind.STATUS, pack(data)) == "schema_version"
    # Even when the future version also changed the fields.
    data["field_from_the_future"] = True
    assert reason(Kind.STATUS, pack(data)) == "schema_version"


def test_missing_schema_version_is_a_schema_error() -> None:
    data = as_dict(factories.status())
    del data["schema"]
    assert reason(Kind.STATUS, pack(data)) == "schema"


def test_dtype_outside_the_whitelist() -> None:
    data = as_dict(factories.experience())
    data["obs"][0] = "object"
    assert reason(Kind.EXPERIENCE, pack(data)) == "dtype"


def test_byte_length_must_match_shape() -> None:
    data = as_dict(factories.experience())
    data["obs"][2] = data["obs"][2][:-4]
    assert reason(Kind.EXPERIENCE, pack(data)) == "shape"


def test_columns_must_have_the_same_length() -> None:
    data = as_dict(factories.experience(rows=8))
    short = to_wire(np.ones(7, dtype=np.float32))
    data["rewards"] = [short.dtype, short.shape, short.data]
    assert reason(Kind.EXPERIENCE, pack(data)) == "shape"


def test_observation_shape_must_match_its_space() -> None:
    data = as_dict(factories.experience(rows=4))
    wrong = to_wire(np.zeros((4, 5), dtype=np.float32))
    data["obs"] = [wrong.dtype, wrong.shape, wrong.data]
    assert reason(Kind.EXPERIENCE, pack(data)) == "shape"


def test_flags_must_be_bool() -> None:
    data = as_dict(factories.experience(rows=4))
    ints = to_wire(np.zeros(4, dtype=np.int64))
    data["terminated"] = [ints.dtype, ints.shape, ints.data]
    assert reason(Kind.EXPERIENCE, pack(data)) == "dtype"


@pytest.mark.parametrize(
    ("actions", "why"),
    [
        (np.array([0, 1, 2, 1]), "invalid"),  # CartPole has actions 0 and 1
        (np.array([0, -1, 1, 1]), "invalid"),
        (np.array([0.0, 1.0, 0.5, 1.0], dtype=np.float32), "dtype"),
    ],
)
def test_discrete_actions_must_be_indices_of_the_space(actions: np.ndarray, why: str) -> None:
    data = as_dict(factories.experience(rows=4))
    wire = to_wire(actions)
    data["actions"] = [wire.dtype, wire.shape, wire.data]
    assert reason(Kind.EXPERIENCE, pack(data)) == why


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_observations(bad: float) -> None:
    data = as_dict(factories.experience(rows=4))
    obs = np.zeros((4, 4), dtype=np.float32)
    obs[2, 1] = bad
    wire = to_wire(obs)
    data["obs"] = [wire.dtype, wire.shape, wire.data]
    assert reason(Kind.EXPERIENCE, pack(data)) == "non_finite"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused_even_with_a_matching_digest(bad: float) -> None:
    message = factories.snapshot()
    weights = np.zeros((8, 4), dtype=np.float32)
    weights[0, 0] = bad
    wire = to_wire(weights)
    tensors = [msgspec.structs.replace(message.tensors[0], data=wire.data), *message.tensors[1:]]
    from agents.bus.signing import tensor_digest

    forged = msgspec.structs.replace(message, tensors=tensors, digest=tensor_digest(tensors))
    assert reason(Kind.POLICY, encode(forged)) == "non_finite"


def test_tampered_tensor_fails_the_digest() -> None:
    payload = bytearray(encode(factories.snapshot()))
    message = factories.snapshot()
    marker = message.tensors[1].data[:8]
    at = bytes(payload).index(marker)
    payload[at] ^= 0xFF
    assert reason(Kind.POLICY, bytes(payload)) == "digest"


def test_duplicate_tensor_names() -> None:
    message = factories.snapshot()
    tensors = [message.tensors[0], message.tensors[0]]
    from agents.bus.signing import tensor_digest

    dup = msgspec.structs.replace(message, tensors=tensors, digest=tensor_digest(tensors))
    assert reason(Kind.POLICY, encode(dup)) == "invalid"


@pytest.mark.parametrize(
    ("field", "value"),
    [("seq", 0), ("seq", -5), ("agent_step", -1), ("agent", "a/b"), ("agent", "+")],
)
def test_out_of_range_fields(field: str, value: object) -> None:
    data = as_dict(factories.experience())
    data[field] = value
    assert reason(Kind.EXPERIENCE, pack(data)) == "invalid"


@pytest.mark.parametrize("field", ["steps_per_second", "regret", "regret_baseline_return"])
def test_non_finite_telemetry_number(field: str) -> None:
    data = as_dict(factories.telemetry())
    data[field] = float("nan")
    assert reason(Kind.TELEMETRY, pack(data)) == "non_finite"


def test_adopt_directive_needs_a_source() -> None:
    data = as_dict(factories.directive())
    data["action"] = "adopt"
    assert reason(Kind.DIRECTIVE, pack(data)) == "invalid"


def test_box_space_needs_bounds_of_its_shape() -> None:
    data = as_dict(factories.experience())
    low = to_wire(np.zeros(3, dtype=np.float32))
    data["obs_space"]["low"] = [low.dtype, low.shape, low.data]
    assert reason(Kind.EXPERIENCE, pack(data)) == "shape"


def test_empty_multi_discrete_is_invalid_not_a_crash() -> None:
    data = as_dict(factories.experience())
    data["action_space"] = {"kind": "multi_discrete", "shape": [0], "dtype": "int64", "nvec": []}
    assert reason(Kind.EXPERIENCE, pack(data)) in {"invalid", "shape"}


@pytest.mark.parametrize("name", sorted(WIRE_DTYPES))
def test_arrays_round_trip_in_every_wire_dtype(name: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) % 2).astype(WIRE_DTYPES[name])
    wire = to_wire(array)
    assert wire.dtype == name
    back = from_wire(wire.dtype, wire.shape, wire.data)
    assert back.dtype == WIRE_DTYPES[name]
    np.testing.assert_array_equal(back, array)


def test_big_endian_input_travels_as_little_endian() -> None:
    array = np.arange(5, dtype=">f4")
    wire = to_wire(array)
    assert wire.data == np.arange(5, dtype="<f4").tobytes()
    np.testing.assert_array_equal(from_wire(wire.dtype, wire.shape, wire.data), array)


def test_unsupported_dtype_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="cannot travel"):
        to_wire(np.array(["a", "b"]))


def test_federated_weights_are_checked_like_a_snapshots() -> None:
    message = factories.weights()
    tampered = msgspec.structs.replace(message, tensors=factories.tensors(seed=99))
    assert reason(Kind.WEIGHTS, encode(tampered)) == "digest"
    # The update travels unsigned by the digest but must be finite, well-formed tensors.
    nan = to_wire(np.full((8, 4), np.nan, dtype=np.float32))
    bad_delta = [msgspec.structs.replace(message.tensors[0], data=nan.data)]
    assert reason(Kind.WEIGHTS, encode(msgspec.structs.replace(message, delta=bad_delta))) == (
        "non_finite"
    )
    assert reason(Kind.WEIGHTS, encode(msgspec.structs.replace(message, samples=-1))) == "invalid"
    assert reason(Kind.WEIGHTS, encode(msgspec.structs.replace(message, round=0))) == "invalid"


@pytest.mark.parametrize("field", ["learns_from", "federates_with"])
def test_telemetry_names_at_most_256_valid_peers(field: str) -> None:
    message = factories.telemetry()
    too_many = [f"p{i}" for i in range(257)]
    assert (
        reason(Kind.TELEMETRY, encode(msgspec.structs.replace(message, **{field: too_many})))
        == "invalid"
    )
    assert (
        reason(Kind.TELEMETRY, encode(msgspec.structs.replace(message, **{field: ["a/b"]})))
        == "invalid"
    )
    assert decode(Kind.TELEMETRY, encode(msgspec.structs.replace(message, **{field: ["a1"]})))


@pytest.mark.parametrize(
    ("stream", "match"),
    [
        ({"stream": "status", "floor": 1, "highest": 1}, "no receipts for stream"),
        ({"stream": "experience", "floor": 5, "highest": 3}, "highest"),
        ({"stream": "experience", "floor": -1, "highest": 3}, "floor"),
        ({"stream": "experience", "floor": 2, "highest": 9, "missing": [2]}, "outside"),
        ({"stream": "experience", "floor": 2, "highest": 9, "missing": [9]}, "outside"),
        (
            {"stream": "experience", "floor": 0, "highest": 5000, "missing": list(range(1, 1002))},
            "missing numbers listed",
        ),
    ],
)
def test_a_receipt_that_makes_no_sense_is_refused(stream: dict[str, Any], match: str) -> None:
    good = msgspec.to_builtins(factories.receipt())
    payload = msgspec.msgpack.encode({**good, "kind": "receipt", "streams": [stream]})
    with pytest.raises(MessageRejected, match=match) as caught:
        decode(Kind.RECEIPT, payload)
    assert caught.value.reason == "invalid"
