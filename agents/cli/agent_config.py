"""``society agent``'s settings: flags over the scenario over the defaults, checked early.

Precedence, most specific first: a flag (or its environment variable), then the scenario
named by ``--scenario``, then the defaults below. Everything that can be wrong (algorithm,
hyperparameters, network, drift regimes) is checked here, before anything starts.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from pathlib import Path

from agents.agent.agent import SHARE_KINDS, AgentConfig
from agents.bus.schemas import HyperValue
from agents.bus.security import society_key
from agents.exceptions import ConfigError
from agents.flags import AgentFlags
from agents.integrations import home_assistant as ha
from agents.learner.adaptation import Strategy
from agents.learner.algorithms import get_algorithm, parse_hyperparams
from agents.learner.envs import DriftPlan, parse_drift
from agents.learner.guard import DEFAULT_BUDGET
from agents.learner.learner import LearnerConfig
from agents.learner.pretrain import StartFrom
from agents.learner.snapshots import make_arch, parse_net_arch
from agents.scenarios import LearnerSection, Scenario, load_scenario
from agents.worlds import device_params

__all__ = ["agent_config"]

DEFAULT_ENV = "CartPole-v1"
DEFAULT_ALGO = "ppo"


def agent_config(args: AgentFlags) -> AgentConfig:
    """The agent's settings from its flags and the scenario they name; ConfigError if wrong."""
    scenario = load_scenario(args.scenario) if args.scenario else None
    env_id = args.env or (scenario.world.env if scenario else DEFAULT_ENV)
    # A scenario about another world contributes nothing world-specific.
    same_world = scenario is not None and scenario.world.env == env_id
    learner_section = scenario.learner if scenario is not None else None

    env_kwargs: dict[str, HyperValue] = (
        dict(scenario.world.kwargs) if same_world and scenario else {}
    )
    if args.device_index is not None:
        seed = args.device_seed
        if seed is None:
            seed = scenario.society.seed if scenario else 0
        env_kwargs.update(device_params(env_id, seed, args.device_index))
    env_kwargs.update(dict(args.env_kwarg or []))

    spec = get_algorithm(args.algo or (learner_section.algo if learner_section else DEFAULT_ALGO))
    hyperparams: dict[str, HyperValue] = {}
    net_arch: list[int] | dict[str, list[int]] | None = None
    activation = args.activation
    options: dict[str, HyperValue] = {}
    if learner_section is not None and learner_section.algo == spec.name:
        hyperparams.update(learner_section.hyperparams)
        net_arch = learner_section.policy.net_arch
        activation = activation or learner_section.policy.activation
        options.update(learner_section.policy.options)
    hyperparams.update(dict(args.hp or []))
    parse_hyperparams(spec, hyperparams)
    if args.net_arch:
        net_arch = parse_net_arch(args.net_arch)

    def pick(flag: int | None, from_scenario: int | None, default: int) -> int:
        if flag is not None:
            return flag
        return from_scenario if from_scenario is not None else default

    learner = LearnerConfig(
        env_id=env_id,
        algo=spec.name,
        env_kwargs=env_kwargs,
        hyperparams=hyperparams,
        arch=make_arch(spec, net_arch=net_arch, activation=activation, options=options),
        seed=args.seed if args.seed is not None else own_seed(args.id, scenario),
        budget_steps=pick(args.steps, None, 0),
        experience_batch=pick(
            args.experience_batch,
            learner_section.experience_batch if learner_section else None,
            256,
        ),
        snapshot_every=pick(
            args.snapshot_every, learner_section.snapshot_every if learner_section else None, 5000
        ),
        checkpoint_every=pick(
            args.checkpoint_every,
            learner_section.checkpoint_every if learner_section else None,
            10_000,
        ),
        drift=drift_plan(args, scenario if same_world else None, env_id),
        strategy=Strategy.parse(
            args.strategy or (learner_section.strategy if learner_section else "lifelong")
        ),
        peer_fraction=_peer_fraction(args, learner_section),
        judge_against_baseline=learner_section is not None
        and learner_section.judge_against_baseline,
        start_from=StartFrom.parse(
            args.start_from or (learner_section.start_from if learner_section else "scratch")
        ),
        history_steps=pick(
            args.history_steps, learner_section.history_steps if learner_section else None, 20_000
        ),
        other_controllers=learner_section is None or learner_section.other_controllers,
        guard=args.guard == "on"
        if args.guard is not None
        else learner_section is not None and learner_section.guard,
        guard_budget=_guard_budget(args, learner_section),
        imagination=learner_section.imagination if learner_section else 0.0,
        hindsight=learner_section.hindsight if learner_section else 0.0,
        shield=learner_section is not None and learner_section.shield,
    )
    shares = _shares(args, learner_section)
    # One initial network for every member of a federation, so that averaging works out of
    # the box (`society run` passes the run's seed to the members and their twins); otherwise
    # each agent draws its own. Exploration follows each agent's own seed either way.
    init_seed = args.init_seed
    if init_seed is None and "federated" in shares:
        init_seed = scenario.society.seed if scenario else 0
    learner = replace(learner, init_seed=init_seed)
    data_dir = Path(args.data_dir) if args.data_dir else Path("society-data/agents") / args.id
    if args.home_assistant and env_id not in ha.THERMOSTAT_ENV_IDS:
        msg = f"--home-assistant: only thermostat agents appear in Home Assistant, not {env_id}"
        raise ConfigError(msg)
    hooks = (ha.HomeAssistantAgent(args.society, args.id, env_id),) if args.home_assistant else ()
    return AgentConfig(
        agent_id=args.id,
        society=args.society,
        learner=learner,
        data_dir=data_dir,
        telemetry_interval=args.telemetry_interval,
        shares=shares,
        twin_of=args.twin_of or "",
        society_key=society_key(args.society_key_file),
        hooks=hooks,
    )


def _guard_budget(args: AgentFlags, section: LearnerSection | None) -> float:
    """``--guard-budget``, else the scenario's ``learner.guard_budget``, else the default."""
    if args.guard_budget is not None:
        return float(args.guard_budget)
    return section.guard_budget if section is not None else DEFAULT_BUDGET


def own_seed(agent_id: str, scenario: Scenario | None) -> int:
    """The seed of an agent started without ``--seed``: its scenario's, offset by its id.

    Two agents never draw the same initial weights and exploration by default (`society run`
    gives its members ``seed + index`` explicitly); the same id gives the same seed again.
    """
    base = scenario.society.seed if scenario is not None else 0
    return (base + zlib.crc32(agent_id.encode())) % 2**31


def _shares(args: AgentFlags, learner_section: LearnerSection | None) -> frozenset[str]:
    if args.twin_of:
        return frozenset()  # a control twin shares and takes nothing
    if args.share is not None:
        return args.share
    if learner_section is not None:
        return frozenset(learner_section.shares)
    return SHARE_KINDS


def _peer_fraction(args: AgentFlags, section: LearnerSection | None) -> float:
    """``--peer-fraction``, else the scenario's ``learner.peer_fraction``, else 0.5."""
    if args.peer_fraction is not None:
        return float(args.peer_fraction)
    if section is not None and section.peer_fraction is not None:
        return section.peer_fraction
    return 0.5


def drift_plan(args: AgentFlags, scenario: Scenario | None, env_id: str) -> DriftPlan | None:
    """The drift from ``--drift``, else the scenario's; ``None`` if neither gives one."""
    section = scenario.drift if scenario is not None else None
    custom = section.regimes if section is not None else {}
    if args.drift:
        plan = DriftPlan(parse_drift(args.drift), cyclic=args.drift_cyclic, regimes=custom)
    elif section is not None:
        plan = DriftPlan(tuple(section.phases), cyclic=section.cyclic, regimes=custom)
    else:
        return None
    plan.specs(env_id)  # an unknown regime fails here, before anything starts
    return plan
