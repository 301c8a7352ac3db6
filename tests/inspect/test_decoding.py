"""What the inspector makes of single messages: key fields per kind, rejections with reasons."""

from __future__ import annotations

import io
import json

import msgspec
import numpy as np
import pytest

from agents.bus.arrays import to_wire
from agents.bus.codec import encode
from agents.bus.schemas import Lineage, Message, RegimeScore, RolloutColumns
from agents.bus.topics import Kind, Topics
from agents.bus.transport import RawMessage
from agents.inspect.decoding import KINDS, Seen, describe, parse_kinds
from agents.inspect.output import Printer, table_header, table_row
from tests import factories

TOPICS = Topics("home")


def raw(kind: Kind, message: Message | bytes, agent: str | None = "a0") -> RawMessage:
    topic = TOPICS.coordinator(kind) if agent is None else TOPICS.agent(agent, kind)
    payload = message if isinstance(message, bytes) else encode(message)
    return RawMessage(topic, payload)


def seen(kind: Kind, message: Message | bytes, agent: str | None = "a0") -> Seen:
    return describe(raw(kind, message, agent), ts=1700000000.25)


def test_experience_shows_seq_rows_and_reward_sum() -> None:
    result = seen(Kind.EXPERIENCE, factories.experience(seq=7, rows=8))
    assert not result.rejected
    assert (result.society, result.agent, result.kind) == ("home", "a0", "experience")
    assert (result.number_name, result.number) == ("seq", 7)
    assert result.fields["rows"] == 8
    assert result.fields["reward_sum"] == 8.0  # eight rewards of 1.0
    assert result.fields["agent_step"] == 56
    assert result.size == len(encode(factories.experience(seq=7, rows=8)))


def test_snapshot_shows_version_step_algo_tensors_digest_and_lineage() -> None:
    snapshot = factories.snapshot(version=3)
    result = seen(Kind.POLICY, snapshot)
    assert (result.number_name, result.number) == ("version", 3)
    assert result.fields["step"] == 3000
    assert result.fields["algo"] == "ppo"
    assert result.fields["tensors"] == 3
    assert result.fields["parameters"] == 8 * 4 + 8 + 2 * 8
    assert result.fields["digest"] == snapshot.digest[:12]
    assert result.fields["lineage"] == "a1@3"
    assert result.fields["signed"] is False


def test_evaluation_shows_mean_return_and_baseline() -> None:
    evaluation = msgspec.structs.replace(
        factories.evaluation(version=4),
        baseline="pd",
        baseline_return=250.0,
        train_regime="moon",
        regimes=[RegimeScore(regime="moon", mean_return=100.0)],
    )
    result = seen(Kind.EVALUATION, evaluation, agent=None)
    assert (result.kind, result.agent, result.number) == ("evaluation", "a0", 4)
    assert result.fields["mean_return"] == 100.0
    assert result.fields["baseline"] == "pd"
    assert result.fields["baseline_return"] == 250.0
    assert result.fields["train_regime"] == "moon"


def test_telemetry_status_directive_and_leaderboard_fields() -> None:
    telemetry = seen(Kind.TELEMETRY, factories.telemetry())
    assert telemetry.fields["env_steps"] == 1234
    assert telemetry.fields["steps_per_second"] == 800.5
    assert telemetry.fields["episode_return"] == 15.0
    status = seen(Kind.STATUS, factories.status(state="offline"))
    assert status.fields["state"] == "offline"
    adopt = msgspec.structs.replace(
        factories.directive(), action="adopt", source=Lineage(agent="a2", version=5)
    )
    directive = seen(Kind.DIRECTIVE, adopt)
    assert (directive.fields["action"], directive.fields["source"]) == ("adopt", "a2@5")
    board = seen(Kind.LEADERBOARD, factories.leaderboard(), agent=None)
    assert (board.fields["entries"], board.fields["leader"]) == (1, "a0")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc1 not msgpack", "malformed"),
        (msgspec.msgpack.encode({"kind": "experience", "schema": 1}), "schema"),
        (msgspec.msgpack.encode({"kind": "experience", "schema": 99}), "schema_version"),
        (b"x" * (8 << 20 | 1), "too_large"),
    ],
)
def test_bad_payloads_are_rejected_with_the_decoders_reason(payload: bytes, reason: str) -> None:
    result = seen(Kind.EXPERIENCE, payload)
    assert result.rejected
    assert result.reason == reason
    assert result.error
    assert (result.agent, result.kind) == ("a0", "experience")


def test_a_payload_from_another_agent_is_rejected_as_topic() -> None:
    result = seen(Kind.STATUS, factories.status(agent="intruder"))
    assert (result.reason, result.agent) == ("topic", "a0")
    assert "intruder" in result.error


def test_a_topic_outside_the_tree_is_rejected_as_topic() -> None:
    result = describe(RawMessage("society/home/elsewhere", b"hi"), ts=0.0)
    assert (result.reason, result.kind, result.society) == ("topic", "unknown", "home")


def test_json_line_has_common_fields_then_kind_fields() -> None:
    line = seen(Kind.EXPERIENCE, factories.experience(seq=2)).as_json()
    assert json.loads(json.dumps(line)) == line
    assert line["kind"] == "experience"
    assert line["seq"] == 2
    assert line["rejected"] is False
    assert "reason" not in line
    rejected = seen(Kind.POLICY, b"\xc1garbage").as_json()
    assert (rejected["rejected"], rejected["reason"]) == (True, "malformed")


def test_kinds_filter_accepts_topic_words_and_refuses_unknown_ones() -> None:
    assert parse_kinds("policy, evaluations") == {"policy", "evaluation"}
    assert set(KINDS) == {"status", "experience", "policy", "telemetry", "directive",
                          "evaluation", "leaderboard", "weights", "receipt",
                          "evaluator_presence", "evaluation_task", "task_result"}  # fmt: skip
    assert parse_kinds("presence,task,result") == {
        "evaluator_presence", "evaluation_task", "task_result"
    }  # fmt: skip
    with pytest.raises(Exception, match="unknown kind bogus"):
        parse_kinds("policy,bogus")


def test_federated_weights_show_their_round_and_what_they_carry() -> None:
    row = table_row(seen(Kind.WEIGHTS, factories.weights(round_=4)))
    assert "weights" in row
    assert " 4 " in row
    assert "samples=512" in row
    assert "update=False" in row
    assert "rollout" not in row  # weights only
    floats = ("log_probs", "advantages", "returns", "values")
    columns = RolloutColumns(
        obs=to_wire(np.zeros((3, 4), np.float32)), actions=to_wire(np.zeros(3, np.int64)),
        **{name: to_wire(np.zeros(3, np.float32)) for name in floats},
    )  # fmt: skip
    pooled = msgspec.structs.replace(factories.weights(round_=5), rollout=columns)
    assert "rollout=3" in table_row(seen(Kind.WEIGHTS, pooled))


def test_table_row_shows_the_key_fields_and_rejections() -> None:
    row = table_row(seen(Kind.EXPERIENCE, factories.experience(seq=9)))
    assert "experience" in row
    assert " 9 " in row
    assert "reward_sum=8" in row
    bad = table_row(seen(Kind.EXPERIENCE, b"\xc1"))
    assert "REJECTED malformed" in bad
    assert table_header().split()[:4] == ["TIME", "SOCIETY", "AGENT", "KIND"]


def test_printer_filters_counts_and_stops() -> None:
    out = io.StringIO()
    stopped: list[bool] = []
    printer = Printer(
        out, json_lines=True, kinds=frozenset({"experience"}), count=2,
        on_done=lambda: stopped.append(True),
    )  # fmt: skip
    printer.show(seen(Kind.STATUS, factories.status()))
    printer.show(seen(Kind.EXPERIENCE, factories.experience(seq=1)))
    assert not stopped
    printer.show(seen(Kind.EXPERIENCE, factories.experience(seq=2)))
    printer.show(seen(Kind.EXPERIENCE, factories.experience(seq=3)))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2]
    assert stopped == [True]


def test_printer_stops_when_its_reader_goes_away() -> None:
    out = io.StringIO()
    out.close()
    stopped: list[bool] = []
    printer = Printer(out, on_done=lambda: stopped.append(True))
    printer.show(seen(Kind.STATUS, factories.status()))
    assert stopped == [True]


def test_evaluator_messages_show_their_evaluator_task_and_result() -> None:
    def on(kind: Kind, message: Message | bytes, evaluator: str = "e0") -> Seen:
        payload = message if isinstance(message, bytes) else encode(message)
        return describe(RawMessage(TOPICS.evaluator(evaluator, kind), payload), ts=1.0)

    presence = on(Kind.PRESENCE, factories.presence("e0"))
    assert (presence.agent, presence.kind, presence.fields["state"]) == (
        "e0", "evaluator_presence", "online"
    )  # fmt: skip
    task = on(Kind.TASK, factories.task("e0"))
    assert (task.kind, task.fields["task"], task.fields["episodes"]) == (
        "evaluation_task", "a0:1:0", 2
    )  # fmt: skip
    result = on(Kind.RESULT, factories.task_result("e0"))
    assert (result.kind, result.fields["mean_return"], result.fields["error"]) == (
        "task_result", 10.5, None
    )  # fmt: skip
    stolen = on(Kind.RESULT, factories.task_result("e0"), evaluator="e1")
    assert (stolen.rejected, stolen.reason) == (True, "topic")
