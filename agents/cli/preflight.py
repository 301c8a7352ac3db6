"""Everything a command names, checked before anything starts.

A new user's mistakes should cost them one line and no wait: an env id that does not exist,
an algorithm that cannot act in the world (SAC on CartPole's discrete actions), a
hyperparameter stable-baselines3 refuses, an output folder that cannot be written or already
holds a run, a metrics port in use, a broker that is not there. Each is a
:class:`~agents.exceptions.ConfigError` (exit status 2, ``society: error: ...``) raised here,
before a broker, a coordinator or an agent process is started, instead of a child process's
exit code and a traceback in its log seconds later.

The learner is checked by building it: the world, the guard and the model, exactly as the
agent will at its start, then thrown away. That is the only check that cannot drift from what
the agent does.
"""

from __future__ import annotations

import errno
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from agents.bus.url import BrokerUrl
from agents.cli.agent_config import agent_config
from agents.exceptions import ConfigError
from agents.learner.learner import Learner, LearnerConfig
from agents.orchestrator.run import Orchestrator

__all__ = [
    "check_broker_reachable",
    "check_learner",
    "check_out_dir",
    "check_port_free",
    "check_run",
]

#: Files a run leaves in its folder; any of them means the folder holds a run.
_RUN_MARKERS = ("summary.json", "agents", "coordinator", "broker")


class _NoEvents:
    """The learner's events, dropped: the learner is built to be checked, never run."""

    def experience(self, batch: Any, step: int) -> None:
        pass

    def snapshot(self, state: Any) -> None:
        pass

    def episode(self, episode_return: float, length: int, step: int, regime: str) -> None:
        pass

    def adapted(self, adaptation: Any) -> None:
        pass


def check_learner(config: LearnerConfig) -> None:
    """Build the learner ``config`` describes (world, guard, model) and throw it away.

    Raises:
        ConfigError: whatever would stop the agent at its start, in one line.
    """
    learner = Learner(replace(config, checkpoint_dir=None), _NoEvents())
    learner.close()


def check_out_dir(path: Path, *, resume: bool) -> None:
    """``--out`` can be created and written, and holds no earlier run unless ``resume``."""
    if path.exists() and not path.is_dir():
        msg = f"--out {path}: exists and is not a folder"
        raise ConfigError(msg)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        msg = f"--out {path}: cannot write there ({exc.strerror or exc})"
        raise ConfigError(msg) from None
    earlier = [name for name in _RUN_MARKERS if (path / name).exists()]
    if earlier and not resume:
        msg = (
            f"--out {path} holds an earlier run ({', '.join(earlier)}): choose another folder, "
            "or add --resume to continue that run"
        )
        raise ConfigError(msg)


def check_port_free(host: str, port: int, *, flag: str) -> None:
    """Nothing listens on ``host:port`` yet (port 0, any free port, always passes)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the metrics server binds (SO_REUSEADDR): connections of a process that just
        # ended (TIME_WAIT) do not hold the port, a listening socket does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen()
        except OSError as exc:
            reason = "in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            msg = f"{flag} {port}: {reason} on {host}; choose another port, or 0 for any free one"
            raise ConfigError(msg) from None


def check_broker_reachable(url: BrokerUrl, *, timeout: float) -> None:
    """A TCP connection to the broker succeeds within ``timeout`` seconds (retried).

    Only the first connection is checked: a broker that is there at the start and goes away
    later is what the bus's reconnect loop and outbox are for. A broker starting at the same
    moment (docker compose, a service manager) gets ``timeout`` seconds to come up.
    """
    deadline = time.monotonic() + timeout
    reason = ""
    while True:
        try:
            with socket.create_connection((url.host, url.port), timeout=min(2.0, timeout)):
                return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
        if time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    msg = f"cannot reach the broker at {url}: {reason.lower()} (tried for {timeout:g} s)"
    raise ConfigError(msg)


def check_run(orchestrator: Orchestrator, *, broker_timeout: float = 5.0) -> None:
    """Everything ``society run`` will start, checked before it starts any of it."""
    plan = orchestrator.plan
    # Any address will do: the agents' settings do not depend on it.
    url = plan.broker or BrokerUrl("127.0.0.1", 1883)
    checked: set[str] = set()
    for agent in plan.agents:
        config = agent_config(orchestrator.agent_flags(agent, url)).learner
        # Members differ in device and seed, not in what can fail: one build per kind.
        kind = repr((config.env_id, config.algo, sorted(config.hyperparams.items()),
                     config.arch, config.start_from, config.guard))  # fmt: skip
        if kind not in checked:
            checked.add(kind)
            check_learner(config)
    plan.tls.context()  # the TLS files can be read (a ConfigError names the one that cannot)
    check_port_free("127.0.0.1", plan.metrics_port, flag="--metrics-port")
    if plan.broker is not None:
        check_broker_reachable(plan.broker, timeout=broker_timeout)
    check_out_dir(plan.out_dir, resume=plan.resume)  # last: it creates the folder
