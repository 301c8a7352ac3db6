"""A new user's mistakes: caught before anything starts, in one line, exit status 2."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.bus.url import BrokerUrl
from agents.cli import commands, main
from agents.cli.preflight import check_broker_reachable, check_out_dir, check_port_free
from agents.exceptions import ConfigError


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``society argv``; it must exit 2 with one line and no traceback. Returns the line."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("society: error: ")
    return lines[0]


def scenario(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n' + text)
    return str(path)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on loopback that nothing listens on (bound, never listening)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('[world]\nenv = "Nope-v0"\n', "unknown environment 'Nope-v0'"),
        ('[world]\nenv = "CartPole-v1"\n[learner]\nalgo = "sac"\n',
         "sac cannot act in CartPole-v1: it needs Box actions, not Discrete(2)"),
        ('[world]\nenv = "CartPole-v1"\n[learner.hyperparams]\nfoo = 1\n',
         "unknown hyperparameter 'foo' for ppo"),
        ('[world]\nenv = "CartPole-v1"\n[learner.hyperparams]\nlearning_rate = -1.0\n',
         "hyperparameter learning_rate=-1.0: must be in (0, 1]"),
        ('[world]\nenv = "CartPole-v1"\n[learner.hyperparams]\ngamma = 7\n',
         "hyperparameter gamma=7.0: must be in [0, 1]"),
        # A value stable-baselines3 refuses by assertion when it builds the model.
        ('[world]\nenv = "CartPole-v1"\n[learner.hyperparams]\nn_steps = 1\n',
         "ppo cannot learn CartPole-v1: "),
    ],
)  # fmt: skip
def test_a_scenario_that_cannot_run_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    out = tmp_path / "run"
    line = refused(capsys, "run", "--config", scenario(tmp_path, text), "--out", str(out))
    assert said in line
    assert not out.exists()  # no broker, coordinator or agent was started


def test_an_output_folder_that_cannot_be_written_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    line = refused(capsys, "run", "--steps", "100", "--out", str(a_file / "run"))
    assert f"--out {a_file / 'run'}: cannot write there" in line
    line = refused(capsys, "run", "--steps", "100", "--out", "/proc/no-run-here")
    assert "--out /proc/no-run-here: cannot write there" in line
    line = refused(capsys, "run", "--steps", "100", "--out", str(a_file))
    assert "exists and is not a folder" in line


def test_a_folder_that_holds_a_run_is_refused_unless_resumed(tmp_path: Path) -> None:
    check_out_dir(tmp_path, resume=False)  # empty: fine
    (tmp_path / "agents").mkdir()
    with pytest.raises(ConfigError, match=r"holds an earlier run .*--resume"):
        check_out_dir(tmp_path, resume=False)
    check_out_dir(tmp_path, resume=True)


def test_a_reused_out_is_refused_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "summary.json").write_text("{}")
    line = refused(capsys, "run", "--steps", "100", "--out", str(tmp_path))
    assert "holds an earlier run (summary.json)" in line


def test_a_metrics_port_in_use_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - where the coordinator would listen
        taken.listen()
        port = taken.getsockname()[1]
        line = refused(capsys, "run", "--metrics-port", str(port), "--out", str(tmp_path / "run"))
        assert f"--metrics-port {port}: in use" in line
        line = refused(
            capsys, "coordinator", "--metrics-port", str(port), "--data-dir", str(tmp_path / "c")
        )
        assert f"--metrics-port {port}: in use" in line


def test_a_port_a_process_just_left_is_free_again() -> None:
    # A coordinator killed after Prometheus scraped it leaves its port in TIME_WAIT; the one
    # started in its place must be able to listen there (the metrics server reuses addresses).
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server's side closes first: its port goes to TIME_WAIT
        client.close()
    check_port_free("127.0.0.1", port, flag="--metrics-port")


def test_a_broker_that_is_not_there_is_said_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    closed_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commands, "BROKER_WAIT", 0.5)
    url = f"mqtt://127.0.0.1:{closed_port}"
    line = refused(capsys, "agent", "--broker", url, "--data-dir", str(tmp_path / "a"))
    assert f"cannot reach the broker at {url}: connection refused (tried for 0.5 s)" in line
    line = refused(capsys, "run", "--broker", url, "--out", str(tmp_path / "run"))
    assert f"cannot reach the broker at {url}" in line
    assert not (tmp_path / "run").exists()


def test_a_broker_that_comes_up_while_waited_for_is_reached(closed_port: int) -> None:
    url = BrokerUrl("127.0.0.1", closed_port)
    with pytest.raises(ConfigError, match="connection refused"):
        check_broker_reachable(url, timeout=0.2)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        check_broker_reachable(BrokerUrl("127.0.0.1", listening.getsockname()[1]), timeout=0.2)
