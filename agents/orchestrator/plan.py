"""From ``society run`` flags and a scenario to a concrete plan: who runs, with what."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from agents.bus.mqtt import TlsFiles
from agents.bus.security import society_key, tls_files
from agents.bus.topics import validate_name
from agents.bus.url import BrokerUrl
from agents.exceptions import ConfigError
from agents.flags import RunFlags
from agents.learner.algorithms import get_algorithm
from agents.learner.envs import DriftPlan
from agents.scenarios import Scenario, load_scenario
from agents.worlds import PRIMARY_BASELINE

__all__ = ["AgentPlan", "RunPlan", "check_requirements"]

#: Optional extras a scenario may need, and a module that is importable when it is installed.
EXTRAS = {"sumo": "sumo_rl"}


def check_requirements(scenario: Scenario) -> None:
    """Raise ConfigError naming the extra to install if the scenario needs a missing one."""
    if not scenario.requires:
        return
    module = EXTRAS.get(scenario.requires)
    if module is None:
        msg = f"scenario {scenario.name} requires unknown extra {scenario.requires!r}"
        raise ConfigError(msg)
    if importlib.util.find_spec(module) is None:
        msg = (
            f"scenario {scenario.name} needs the {scenario.requires} extra: "
            f"pip install 'agent-society[{scenario.requires}]' (or .[{scenario.requires}])"
        )
        raise ConfigError(msg)


@dataclass(frozen=True, slots=True)
class AgentPlan:
    id: str
    env_id: str
    algo: str
    seed: int
    #: The seed of the initial weights, shared by the run's agents (federated averaging).
    init_seed: int = 0
    #: Set when the scenario gives each member its own device parameters.
    device_index: int | None = None
    #: For an isolated control twin: the agent it is the twin of.
    twin_of: str = ""


@dataclass(frozen=True, slots=True)
class RunPlan:
    scenario: Scenario
    #: What agents and coordinator get as ``--scenario``: a built-in name or an absolute path.
    scenario_ref: str
    society: str
    agents: tuple[AgentPlan, ...]
    steps: int
    out_dir: Path
    broker: BrokerUrl | None
    broker_kind: str
    metrics_port: int
    duration: float | None
    eval_timeout: float
    quiet: bool
    log_level: str
    json_logs: bool
    strategy: str | None = None
    shares: frozenset[str] | None = None
    society_key: bytes | None = None
    #: Continue the run already in ``out_dir`` (``--resume``).
    resume: bool = False
    #: TLS files for an ``mqtts://`` broker (``--tls-ca/--tls-cert/--tls-key``), handed on.
    tls: TlsFiles = field(default_factory=TlsFiles)
    #: The run's seed (agents get it offset by their index; the coordinator's evolution it).
    seed: int = 0

    @property
    def federates(self) -> bool:
        """Whether the sharing agents average their weights (``--share``, else the scenario's)."""
        shares = self.shares if self.shares is not None else self.scenario.learner.shares
        return "federated" in shares

    @classmethod
    def from_flags(cls, flags: RunFlags) -> RunPlan:
        """Build the plan; raises ConfigError naming anything that does not fit."""
        scenario_ref = str(flags.config.resolve()) if flags.config is not None else flags.scenario
        scenario = load_scenario(scenario_ref)
        # Fail before starting anything: algorithm, extras, drift regimes.
        get_algorithm(scenario.learner.algo)
        check_requirements(scenario)
        if scenario.drift is not None:
            drift = scenario.drift
            DriftPlan(tuple(drift.phases), drift.cyclic, drift.regimes).specs(scenario.world.env)
        if scenario.learner.judge_against_baseline and scenario.world.env not in PRIMARY_BASELINE:
            msg = (
                f"scenario {scenario.name}: learner.judge_against_baseline needs a world with a "
                f"baseline controller; {scenario.world.env} has none"
            )
            raise ConfigError(msg)
        society = flags.society or validate_name(scenario.name, "scenario name")
        count = flags.agents or scenario.society.agents
        seed = flags.seed if flags.seed is not None else scenario.society.seed
        sharing = tuple(
            AgentPlan(
                id=f"{society}-{index}",
                env_id=scenario.world.env,
                algo=scenario.learner.algo,
                seed=seed + index,
                init_seed=seed,
                device_index=index if scenario.world.heterogeneous else None,
            )
            for index in range(count)
        )
        twins = tuple(
            replace(agent, id=f"{agent.id}-twin", twin_of=agent.id)
            for agent in sharing
            if flags.twins or scenario.society.twins
        )
        agents = sharing + twins
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out_dir = Path(flags.out) if flags.out else Path("runs") / f"{scenario.name}-{stamp}"
        return cls(
            scenario=scenario,
            scenario_ref=scenario_ref,
            society=society,
            agents=agents,
            steps=flags.steps if flags.steps is not None else scenario.society.steps,
            out_dir=out_dir,
            broker=flags.broker,
            broker_kind=flags.broker_kind,
            metrics_port=flags.metrics_port,
            duration=flags.duration,
            eval_timeout=flags.eval_timeout,
            quiet=flags.quiet,
            log_level=flags.log_level.upper(),
            json_logs=flags.json_logs,
            strategy=flags.strategy,
            shares=flags.share,
            society_key=society_key(flags.society_key_file),
            resume=flags.resume,
            tls=tls_files(flags.tls_ca, flags.tls_cert, flags.tls_key),
            seed=seed,
        )
