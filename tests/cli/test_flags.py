"""Each process's flags are declared once: settings -> argv -> parser -> the same settings."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.bus.url import BrokerUrl
from agents.cli.options import parse_args, settings_of
from agents.cli.parser import build_parser
from agents.flags import (
    AgentFlags,
    CoordinatorFlags,
    EvaluatorFlags,
    RunFlags,
    flag_fields,
    to_argv,
)
from agents.flags.common import LOG_LEVELS
from agents.flags.values import SHARE_KINDS, scalar
from agents.orchestrator.plan import RunPlan
from agents.orchestrator.run import Orchestrator

COMMANDS: dict[type[Any], str] = {
    AgentFlags: "agent",
    CoordinatorFlags: "coordinator",
    EvaluatorFlags: "evaluator",
    RunFlags: "run",
}


@pytest.fixture(scope="module")
def a_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flags") / "key.pem"
    path.write_text("secret\n")
    return path


def parse(cls: type[Any], argv: list[str]) -> Any:
    """``society COMMAND argv`` as settings, with no SOCIETY_* variable around."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SOCIETY_")}
    with mock.patch.dict(os.environ, clean, clear=True):
        namespace, _ = parse_args(build_parser(), [COMMANDS[cls], *argv])
    return settings_of(cls, namespace)


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
# Free text, including what looks like a flag or a negative number. Not "--" alone: argparse
# takes that as the end of the options wherever it stands, even as ``--flag=--``, so no
# command line can carry it as a value.
texts = st.from_regex(r"-?[A-Za-z0-9_:./,;= -]{1,20}", fullmatch=True).filter(
    lambda text: text != "--"
)
optional = st.none().__or__
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5})?", fullmatch=True)
brokers = st.builds(
    BrokerUrl,
    host=hosts,
    port=st.integers(1, 65535),
    tls=st.booleans(),
    username=optional(st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True)),
).flatmap(
    lambda url: st.builds(
        dataclasses.replace,
        st.just(url),
        password=st.none()
        if url.username is None
        else optional(st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True)),
    )
)
hyper_values = st.one_of(
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
        lambda text: scalar(text) == text
    ),
)
key_values = optional(
    st.lists(
        st.tuples(st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True), hyper_values),
        min_size=1,
        max_size=3,
    ).map(tuple)
)
counts = optional(st.integers(1, 10**7))
finite = st.floats(allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-9, allow_nan=False, allow_infinity=False)
fractions = st.floats(0.0, 1.0, exclude_max=True)


def common(files: st.SearchStrategy[Path | None]) -> dict[str, st.SearchStrategy[Any]]:
    return {
        "tls_ca": files,
        "tls_cert": files,
        "tls_key": files,
        "society_key_file": files,
        "log_level": st.sampled_from(LOG_LEVELS),
        "json_logs": st.booleans(),
        "home_assistant": st.booleans(),
        "strategy": optional(st.sampled_from(["lifelong", "finetune", "scratch"])),
        "share": optional(st.frozensets(st.sampled_from(SHARE_KINDS))),
    }


def strategy_for(cls: type[Any], a_file: Path) -> st.SearchStrategy[Any]:
    fields: dict[str, st.SearchStrategy[Any]] = {
        **common(optional(st.just(a_file))),
        "id": names,
        "society": names,
        "broker": brokers,
        "scenario": texts,
        "env": optional(texts),
        "env_kwarg": key_values,
        "device_index": optional(st.integers(0, 10**6)),
        "device_seed": optional(st.integers(0, 10**6)),
        "drift": optional(texts),
        "drift_cyclic": st.booleans(),
        "algo": optional(texts),
        "peer_fraction": optional(fractions),
        "twin_of": optional(names),
        "start_from": optional(st.sampled_from(["baseline", "scratch"])),
        "history_steps": counts,
        "guard": optional(st.sampled_from(["on", "off"])),
        "guard_budget": optional(fractions),
        "hp": key_values,
        "net_arch": optional(texts),
        "activation": optional(texts),
        "steps": optional(st.integers(0, 10**9)),
        "seed": optional(st.integers(0, 10**9)),
        "init_seed": optional(st.integers(0, 10**9)),
        "snapshot_every": counts,
        "experience_batch": counts,
        "checkpoint_every": counts,
        "telemetry_interval": positive,
        "data_dir": texts,
        "metrics_port": st.integers(0, 65535),
        "metrics_host": texts,
        "eval_episodes": st.integers(1, 100),
        "eval_seed": st.integers(0, 10**9),
        "eval_workers": st.integers(0 if cls is CoordinatorFlags else 1, 64),
        "remote_evaluators": st.booleans(),
        "remote_eval_timeout": positive,
        "threshold": optional(finite),
        "evolution_interval": st.floats(min_value=0, allow_nan=False, allow_infinity=False),
        "evolution_every_steps": st.integers(0, 10**9),
        "threshold_scale": st.sampled_from(["return", "normalised", "over_baseline"]),
        "threshold_window": st.integers(1, 100),
        "evolution_quantile": fractions,
        "allow_env": optional(st.lists(texts, min_size=1, max_size=3).map(tuple)),
        "config": optional(st.just(a_file)),
        "agents": counts,
        "duration": optional(positive),
        "twins": st.booleans(),
        "broker_kind": st.sampled_from(["auto", "mosquitto", "python"]),
        "out": optional(texts),
        "eval_timeout": positive,
        "quiet": st.booleans(),
        "resume": st.booleans(),
        "nice": st.integers(0, 19),
    }
    if cls is RunFlags:
        fields.update(broker=optional(brokers), society=optional(names), steps=optional(
            st.integers(0, 10**9)))  # fmt: skip
    declared = [flag.dest for flag, _ in flag_fields(cls)]
    return st.fixed_dictionaries({name: fields[name] for name in declared}).map(
        lambda values: cls(**values)
    )


@pytest.mark.parametrize("cls", list(COMMANDS), ids=lambda cls: cls.__name__)
def test_settings_survive_the_command_line(cls: type[Any], a_file: Path) -> None:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(strategy_for(cls, a_file))
    def round_trip(flags: Any) -> None:
        assert parse(cls, to_argv(flags)) == flags

    round_trip()


@pytest.mark.parametrize("cls", list(COMMANDS), ids=lambda cls: cls.__name__)
def test_the_defaults_are_the_parsers(cls: type[Any]) -> None:
    """No flag at all gives the declared defaults; the declared defaults give no surprise."""
    assert parse(cls, []) == cls()
    assert parse(cls, to_argv(cls())) == cls()


@pytest.mark.parametrize("cls", list(COMMANDS), ids=lambda cls: cls.__name__)
def test_every_option_of_the_command_is_declared(cls: type[Any]) -> None:
    _, command = parse_args(build_parser(), [COMMANDS[cls]])
    options = {
        action.dest
        for action in command._actions
        if action.option_strings and action.dest != "help"
    }
    assert options == {field.name for field in dataclasses.fields(cls)}


def test_run_starts_its_processes_with_the_settings_it_planned(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem"))
    for path in (ca, cert, key):
        path.write_text("")
    namespace, _ = parse_args(
        build_parser(),
        ["run", "--scenario", "smart-home", "--agents", "2", "--twins", "--share", "experience",
         "--strategy", "finetune", "--out", str(tmp_path), "--json-logs",
         "--tls-ca", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)],
    )  # fmt: skip
    plan = RunPlan.from_flags(settings_of(RunFlags, namespace))
    orchestrator = Orchestrator(plan)
    url = BrokerUrl("127.0.0.1", 1884, username="u", password="p")  # noqa: S106
    coordinator = orchestrator.coordinator_flags(url)
    argv = orchestrator._coordinator_args(url)
    assert argv[0] == "coordinator"
    assert parse(CoordinatorFlags, argv[1:]) == coordinator
    assert coordinator.broker.password == "p"
    assert coordinator.json_logs
    # The TLS files reach every process (the observer's transport too, plan.tls).
    assert (coordinator.tls_ca, coordinator.tls_cert, coordinator.tls_key) == (ca, cert, key)
    assert (plan.tls.ca_file, plan.tls.cert_file, plan.tls.key_file) == (ca, cert, key)
    for agent in plan.agents:
        flags = orchestrator.agent_flags(agent, url)
        argv = orchestrator._agent_args(agent, url)
        assert argv[0] == "agent"
        assert parse(AgentFlags, argv[1:]) == flags
        if agent.twin_of:
            assert (flags.twin_of, flags.share) == (agent.twin_of, None)
        else:
            assert (flags.twin_of, flags.share) == (None, frozenset({"experience"}))
        assert (flags.device_index, flags.strategy) == (agent.device_index, "finetune")
        assert flags.device_seed == plan.seed  # the run's devices, drawn from its seed
        assert (flags.tls_ca, flags.tls_cert, flags.tls_key) == (ca, cert, key)
