"""Bad input on the command line: one line naming the problem, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import main


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["agent", "--steps", "abc"], "--steps"),
        (["agent", "--steps", "-5"], "--steps"),
        (["agent", "--broker", "http://x"], "--broker"),
        (["agent", "--id", "a/b"], "--id"),
        (["agent", "--hp", "novalue"], "--hp"),
        (["agent", "--nice", "20"], "--nice"),
        (["agent", "--nice", "-1"], "--nice"),
        (["run", "--agents", "0"], "--agents"),
        (["run", "--duration", "soon"], "--duration"),
        (["run", "--config", "/no/such/file.toml"], "--config"),
        (["coordinator", "--metrics-port", "70000"], "--metrics-port"),
        (["coordinator", "--eval-episodes", "0"], "--eval-episodes"),
        (["coordinator", "--threshold-window", "0"], "--threshold-window"),
        (["coordinator", "--eval-workers", "0"], "--eval-workers"),
        (["coordinator", "--remote-eval-timeout", "0"], "--remote-eval-timeout"),
        (["evaluator", "--id", "a/b"], "--id"),
        (["evaluator", "--broker", "http://x"], "--broker"),
        (["evaluator", "--eval-episodes", "3"], "--eval-episodes"),
        (["broker", "--kind", "rabbit"], "--kind"),
        (["frobnicate"], "frobnicate"),
        (["agent", "--no-such-flag"], "--no-such-flag"),
        (["agent", "--tls-ca", "/no/such/ca.pem"], "--tls-ca"),
        (["coordinator", "--tls-key", "pyproject.toml"], "--tls-key"),
        (["inspect", "--tls-cert", "/no/such/cert.pem"], "--tls-cert"),
        (["agent", "--env", "CartPole-v1", "--home-assistant"], "--home-assistant"),
    ],
)
def test_bad_flag_is_one_line_naming_it(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_main(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("society: error:")
    assert named in err


def test_bad_environment_variable_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOCIETY_STEPS", "lots")
    code, err = run_main(["agent"], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "SOCIETY_STEPS" in err


def test_environment_variables_configure_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.cli.options import parse_args
    from agents.cli.parser import build_parser

    monkeypatch.setenv("SOCIETY_STEPS", "1_000")
    monkeypatch.setenv("SOCIETY_BROKER", "mqtt://user:pw@broker.example:1884")
    monkeypatch.setenv("SOCIETY_HYPERPARAMS", "learning_rate=0.001 n_steps=64")
    args, _ = parse_args(build_parser(), ["agent", "--algo", "ppo"])
    assert args.steps == 1000
    assert args.broker.host == "broker.example"
    assert args.broker.port == 1884
    assert args.broker.password == "pw"
    assert args.hp == [("learning_rate", 0.001), ("n_steps", 64)]
    # A flag beats the environment.
    args, _ = parse_args(build_parser(), ["agent", "--steps", "5"])
    assert args.steps == 5


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["run", "--scenario", "no-such-scenario"], "no-such-scenario"),
        (["agent", "--algo", "trpo"], "trpo"),
        (["agent", "--activation", "wiggly"], "wiggly"),
        (["agent", "--net-arch", "qf=3"], "heads"),
        (["agent", "--hp", "exploration_fraction=0.1", "--algo", "dqn"], "exploration_steps"),
        (["agent", "--hp", "flux_capacitor=1"], "flux_capacitor"),
    ],
)
def test_bad_values_found_after_parsing_are_one_line_too(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_main(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert named in err


def test_bad_scenario_file_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mine.toml"
    config.write_text('name = "mine"\n[world]\nenv = "CartPole-v1"\n[society]\nagents = "many"\n')
    code, err = run_main(["run", "--config", str(config)], capsys)
    assert code == 2
    assert "society.agents" in err
    config.write_text('name = "mine"\n[world]\nenv = "CartPole-v1"\n[learner]\nalgoo = "ppo"\n')
    code, err = run_main(["run", "--config", str(config)], capsys)
    assert code == 2
    assert "algoo" in err
    config.write_text(
        'name = "mine"\n[world]\nenv = "Pendulum-v1"\n[learner]\njudge_against_baseline = true\n'
    )
    code, err = run_main(["run", "--config", str(config)], capsys)
    assert code == 2
    assert "judge_against_baseline" in err
    assert err.count("\n") == 1


def test_console_script_exits_2_from_a_real_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agents", "run", "--steps", "many"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--steps" in result.stderr


def test_scenarios_lists_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert "cartpole" in out
    assert "CartPole-v1" in out
