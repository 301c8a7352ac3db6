"""The built-in scenarios load, name real regimes, and say what they need."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from agents.bus.url import BrokerUrl
from agents.cli.agent_config import agent_config
from agents.cli.options import parse_args, settings_of
from agents.cli.parser import build_parser
from agents.exceptions import ConfigError
from agents.flags import AgentFlags, RunFlags
from agents.learner.envs import DriftPlan
from agents.learner.pretrain import StartFrom
from agents.orchestrator.plan import RunPlan, check_requirements
from agents.orchestrator.run import Orchestrator
from agents.scenarios import builtin_scenarios, load_scenario
from agents.worlds import device_params


@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
def test_builtin_scenario_is_complete(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.description
    if scenario.drift is not None:
        specs = DriftPlan(tuple(scenario.drift.phases), regimes=scenario.drift.regimes).specs(
            scenario.world.env
        )
        assert specs


BENCH_SCENARIOS = sorted((Path(__file__).parents[1] / "bench" / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", BENCH_SCENARIOS, ids=lambda p: p.stem)
def test_the_benchmark_scenarios_load(path: Path) -> None:
    scenario = load_scenario(str(path))
    assert scenario.name == path.stem
    assert scenario.evaluation.threshold is not None  # the sharing gain needs one
    assert scenario.evolution is not None


def test_the_issue_scenarios_exist_and_drift() -> None:
    for name in ("cartpole", "smart-home", "traffic"):
        scenario = load_scenario(name)
        assert scenario.drift is not None, name
        assert scenario.drift.cyclic, f"{name}: a regime should come back"
    assert load_scenario("smart-home").world.heterogeneous
    assert load_scenario("traffic").world.heterogeneous


def test_a_scenario_that_needs_a_missing_extra_says_how_to_install_it(tmp_path: Path) -> None:
    path = tmp_path / "needs.toml"
    path.write_text('name = "needs"\nrequires = "sumo"\n[world]\nenv = "CartPole-v1"\n')
    scenario = load_scenario(str(path))
    if importlib.util.find_spec("sumo_rl") is None:
        with pytest.raises(ConfigError, match=r"pip install .*\[sumo\]"):
            check_requirements(scenario)
    else:
        check_requirements(scenario)
    path.write_text('name = "needs"\nrequires = "quantum"\n[world]\nenv = "CartPole-v1"\n')
    with pytest.raises(ConfigError, match="quantum"):
        check_requirements(load_scenario(str(path)))


def run_args(*argv: str) -> argparse.Namespace:
    args, _ = parse_args(build_parser(), list(argv))
    return args


def agent_flags(*argv: str) -> AgentFlags:
    return settings_of(AgentFlags, run_args("agent", *argv))


def run_flags(*argv: str) -> RunFlags:
    return settings_of(RunFlags, run_args("run", *argv))


def test_run_plan_gives_each_member_its_device_when_heterogeneous(tmp_path: Path) -> None:
    plan = RunPlan.from_flags(run_flags("--scenario", "traffic", "--agents", "3",
                                        "--out", str(tmp_path)))  # fmt: skip
    assert [agent.device_index for agent in plan.agents] == [0, 1, 2]
    assert [agent.seed for agent in plan.agents] == [0, 1, 2]
    plan = RunPlan.from_flags(run_flags("--scenario", "cartpole", "--out", str(tmp_path)))
    assert {agent.device_index for agent in plan.agents} == {None}


def test_an_agent_builds_its_own_device_and_drift_from_the_scenario(tmp_path: Path) -> None:
    args = agent_flags("--scenario", "smart-home", "--device-index", "2",
                       "--data-dir", str(tmp_path))  # fmt: skip
    config = agent_config(args).learner
    assert config.env_id == "society/Thermostat-v0"
    assert dict(config.env_kwargs) == device_params("society/Thermostat-v0", 0, 2)
    assert config.drift is not None
    assert config.drift.phases == (("winter", 15000), ("summer", 15000))
    assert config.hyperparams["n_steps"] == 256


def test_the_run_s_seed_draws_its_devices(tmp_path: Path) -> None:
    # `society run --seed 5` asks for another society: its members' houses are seed 5's, the
    # same for a member and its twin, and not the scenario file's seed 0's.
    plan = RunPlan.from_flags(run_flags("--scenario", "smart-home", "--seed", "5", "--twins",
                                        "--out", str(tmp_path)))  # fmt: skip
    orchestrator = Orchestrator(plan)
    url = BrokerUrl("127.0.0.1", 1883)
    devices = {}
    for agent in plan.agents:
        flags = agent_flags(*orchestrator._agent_args(agent, url)[1:], "--data-dir",
                            str(tmp_path / agent.id))  # fmt: skip
        devices[agent.id] = dict(agent_config(flags).learner.env_kwargs)
    env_id = "society/Thermostat-v0"
    assert devices["smart-home-2"] == device_params(env_id, 5, 2)
    assert devices["smart-home-2-twin"] == devices["smart-home-2"]
    assert devices["smart-home-2"] != device_params(env_id, 0, 2)
    # An agent started by hand without --device-seed draws from the scenario's seed.
    by_hand = agent_flags("--scenario", "smart-home", "--device-index", "2",
                          "--data-dir", str(tmp_path / "by-hand"))  # fmt: skip
    assert dict(agent_config(by_hand).learner.env_kwargs) == device_params(env_id, 0, 2)


def test_flags_override_the_scenario(tmp_path: Path) -> None:
    args = agent_flags("--scenario", "cartpole", "--drift", "moon:50", "--drift-cyclic",
                       "--hp", "n_steps=128", "--data-dir", str(tmp_path))  # fmt: skip
    config = agent_config(args).learner
    assert config.drift is not None
    assert config.drift.phases == (("moon", 50),)
    assert config.drift.cyclic
    assert config.hyperparams["n_steps"] == 128


def test_drift_on_any_env_id(tmp_path: Path) -> None:
    args = agent_flags("--env", "Pendulum-v1", "--algo", "sac",
                       "--drift", "earth:100,moon:100", "--data-dir", str(tmp_path))  # fmt: skip
    config = agent_config(args).learner
    assert config.drift is not None
    assert [s.name for s in config.drift.specs("Pendulum-v1")] == ["earth", "moon"]
    bad = agent_flags("--env", "Acrobot-v1", "--drift", "earth:100",
                      "--data-dir", str(tmp_path))  # fmt: skip
    with pytest.raises(ConfigError, match="unknown regime 'earth'"):
        agent_config(bad)


def test_the_learner_section_reaches_the_agent(tmp_path: Path) -> None:
    path = tmp_path / "share.toml"
    path.write_text(
        'name = "share"\n[world]\nenv = "CartPole-v1"\n'
        '[learner]\nalgo = "dqn"\npeer_fraction = 0.75\njudge_against_baseline = true\n'
    )
    config = agent_config(agent_flags("--scenario", str(path), "--data-dir", str(tmp_path)))
    assert (config.learner.peer_fraction, config.learner.judge_against_baseline) == (0.75, True)
    flag = agent_flags("--scenario", str(path), "--peer-fraction", "0.2",
                       "--data-dir", str(tmp_path))  # fmt: skip
    assert agent_config(flag).learner.peer_fraction == 0.2
    # The default: as much from peers as from itself; judged on returns.
    plain = agent_config(agent_flags("--scenario", "cartpole", "--data-dir", str(tmp_path)))
    assert (plain.learner.peer_fraction, plain.learner.judge_against_baseline) == (0.5, False)
    assert load_scenario("smart-home").learner.judge_against_baseline
    path.write_text(
        'name = "share"\n[world]\nenv = "CartPole-v1"\n[learner]\npeer_fraction = 1.0\n'
    )
    with pytest.raises(ConfigError, match=r"learner.peer_fraction must be in \[0, 1\)"):
        load_scenario(str(path))


def test_a_threshold_scale_that_contradicts_the_older_switch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "both.toml"
    path.write_text(
        'name = "both"\n[world]\nenv = "CartPole-v1"\n[evaluation]\nthreshold = 0.1\n'
        'threshold_normalised = true\nthreshold_scale = "over_baseline"\n'
    )
    with pytest.raises(ConfigError, match="threshold_normalised = true contradicts"):
        load_scenario(str(path))
    path.write_text(
        'name = "bad"\n[world]\nenv = "CartPole-v1"\n[evaluation]\nthreshold_scale = "percent"\n'
    )
    with pytest.raises(ConfigError, match="threshold_scale"):
        load_scenario(str(path))


def test_the_scenarios_threshold_reaches_the_coordinator(tmp_path: Path) -> None:
    config = Path(__file__).parents[1] / "bench" / "scenarios" / "traffic-dqn-sharing.toml"
    plan = RunPlan.from_flags(run_flags("--config", str(config), "--twins", "--out", str(tmp_path)))
    argv = Orchestrator(plan)._coordinator_args(BrokerUrl("127.0.0.1", 1883))
    args = run_args(*argv)
    assert (args.threshold, args.threshold_scale, args.threshold_window) == (0.9, "normalised", 3)
    plain = RunPlan.from_flags(run_flags("--scenario", "cartpole", "--out", str(tmp_path)))
    assert run_args(*Orchestrator(plain)._coordinator_args(BrokerUrl("h", 1))).threshold_window == 1


@pytest.mark.parametrize("name", ["smart-home", "traffic", "home-battery", "shop", "car-following"])
def test_device_scenarios_start_from_their_controller_behind_the_guard(
    name: str, tmp_path: Path
) -> None:
    learner = agent_config(agent_flags("--scenario", name, "--data-dir", str(tmp_path))).learner
    assert (learner.start_from, learner.guard, learner.guard_budget) == (
        StartFrom.BASELINE, True, 0.02,
    )  # fmt: skip
    assert learner.history_steps >= 10_000
    flags = agent_flags("--scenario", name, "--start-from", "scratch", "--guard", "off",
                        "--guard-budget", "0.1", "--history-steps", "500",
                        "--data-dir", str(tmp_path))  # fmt: skip
    learner = agent_config(flags).learner
    assert (learner.start_from, learner.guard, learner.guard_budget, learner.history_steps) == (
        StartFrom.SCRATCH, False, 0.1, 500,
    )  # fmt: skip


def test_a_scenario_can_switch_off_cloning_the_other_controllers(tmp_path: Path) -> None:
    on = agent_config(agent_flags("--scenario", "home-battery", "--data-dir", str(tmp_path)))
    assert on.learner.other_controllers
    path = tmp_path / "single.toml"
    path.write_text(
        'name = "single"\n[world]\nenv = "society/HomeBattery-v0"\n'
        '[learner]\nstart_from = "baseline"\nother_controllers = false\n'
    )
    off = agent_config(agent_flags("--scenario", str(path), "--data-dir", str(tmp_path)))
    assert not off.learner.other_controllers


def test_a_scenario_sets_imagination_within_bounds(tmp_path: Path) -> None:
    path = tmp_path / "dreams.toml"
    path.write_text(
        'name = "dreams"\n[world]\nenv = "society/Thermostat-v0"\n[learner]\nimagination = 3.5\n'
    )
    config = agent_config(agent_flags("--scenario", str(path), "--data-dir", str(tmp_path)))
    assert config.learner.imagination == 3.5
    shipped = agent_config(agent_flags("--scenario", "smart-home", "--data-dir", str(tmp_path)))
    assert shipped.learner.imagination == 4.0
    battery = agent_config(agent_flags("--scenario", "home-battery", "--data-dir", str(tmp_path)))
    assert battery.learner.imagination == 0.0  # its world does not name what its actions change
    path.write_text('name = "bad"\n[world]\nenv = "CartPole-v1"\n[learner]\nimagination = -1\n')
    with pytest.raises(ConfigError, match=r"learner\.imagination must be in \[0, 64\]"):
        load_scenario(str(path))


def test_a_scenario_sets_hindsight_plans_within_bounds_and_with_imagination(
    tmp_path: Path,
) -> None:
    path = tmp_path / "plans.toml"
    head = 'name = "plans"\n[world]\nenv = "society/Thermostat-v0"\n[learner]\n'
    path.write_text(head + "imagination = 2.0\nhindsight = 0.5\n")
    config = agent_config(agent_flags("--scenario", str(path), "--data-dir", str(tmp_path)))
    assert config.learner.hindsight == 0.5
    shipped = agent_config(agent_flags("--scenario", "smart-home", "--data-dir", str(tmp_path)))
    assert shipped.learner.hindsight == 0.1
    for body, needle in [
        ("imagination = 2.0\nhindsight = 1.5\n", r"learner\.hindsight must be in \[0, 1\]"),
        ("hindsight = 0.5\n", r"learner\.hindsight needs learner\.imagination > 0"),
    ]:
        path.write_text(head + body)
        with pytest.raises(ConfigError, match=needle):
            load_scenario(str(path))


def test_cartpole_starts_from_scratch_without_a_guard(tmp_path: Path) -> None:
    learner = agent_config(agent_flags("--scenario", "cartpole", "--data-dir", str(tmp_path)))
    assert (learner.learner.start_from, learner.learner.guard) == (StartFrom.SCRATCH, False)


def test_a_bad_start_or_guard_budget_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\n[world]\nenv = "CartPole-v1"\n[learner]\nstart_from = "x"\n')
    with pytest.raises(ConfigError, match=r"learner\.start_from must be baseline or scratch"):
        load_scenario(str(path))
    path.write_text('name = "bad"\n[world]\nenv = "CartPole-v1"\n[learner]\nguard_budget = 2\n')
    with pytest.raises(ConfigError, match=r"learner.guard_budget must be in \[0, 1\)"):
        load_scenario(str(path))


def test_a_federations_members_share_one_initial_network_and_others_do_not(
    tmp_path: Path,
) -> None:
    def init_seed(*flags: str) -> int | None:
        args = agent_flags("--data-dir", str(tmp_path), *flags)
        return agent_config(args).learner.init_seed

    assert init_seed("--scenario", "smart-home") == load_scenario("smart-home").society.seed
    assert init_seed("--scenario", "traffic") is None  # DQN: it does not federate
    assert init_seed("--scenario", "cartpole") is None  # it does not federate
    assert init_seed("--scenario", "smart-home", "--share", "experience") is None
    assert init_seed("--scenario", "cartpole", "--init-seed", "9") == 9
    assert init_seed("--env", "CartPole-v1") == 0  # shares all, federated included


def test_society_run_gives_a_federation_and_its_twins_the_run_seed_as_initial_network(
    tmp_path: Path,
) -> None:
    def init_seeds(*flags: str) -> set[int | None]:
        plan = RunPlan.from_flags(run_flags(*flags, "--out", str(tmp_path)))
        orchestrator = Orchestrator(plan)
        url = BrokerUrl("127.0.0.1", 1883)
        return {
            agent_config(orchestrator.agent_flags(agent, url)).learner.init_seed
            for agent in plan.agents
        }

    assert init_seeds("--scenario", "smart-home", "--twins", "--seed", "5") == {5}
    assert init_seeds("--scenario", "cartpole", "--twins") == {None}


def test_agents_without_a_seed_never_share_one(tmp_path: Path) -> None:
    def seed(*flags: str) -> int:
        return agent_config(agent_flags("--data-dir", str(tmp_path), *flags)).learner.seed

    by_id = {seed("--scenario", "smart-home", "--id", f"home-{i}") for i in range(20)}
    assert len(by_id) == 20
    # The same id gives the same seed again; --seed is taken as given.
    assert seed("--scenario", "smart-home", "--id", "home-3") == seed(
        "--scenario", "smart-home", "--id", "home-3"
    )
    assert seed("--scenario", "smart-home", "--id", "home-3", "--seed", "0") == 0


def test_evolution_by_steps_reaches_the_coordinator_and_one_clock_only(tmp_path: Path) -> None:
    plan = RunPlan.from_flags(run_flags("--scenario", "cartpole", "--out", str(tmp_path)))
    args = run_args(*Orchestrator(plan)._coordinator_args(BrokerUrl("h", 1)))
    assert (args.evolution_every_steps, args.evolution_interval) == (10_000, 0.0)
    assert args.seed == 0  # the scenario's seed: evolution draws differently in another run
    seeded = RunPlan.from_flags(
        run_flags("--scenario", "cartpole", "--seed", "7", "--out", str(tmp_path))
    )
    assert run_args(*Orchestrator(seeded)._coordinator_args(BrokerUrl("h", 1))).seed == 7
    path = tmp_path / "both.toml"
    path.write_text(
        'name = "both"\n[world]\nenv = "CartPole-v1"\n[evolution]\ninterval = 30.0\n'
        "every_steps = 10000\n"
    )
    with pytest.raises(ConfigError, match="set interval or every_steps, not both"):
        load_scenario(str(path))
    path.write_text('name = "neg"\n[world]\nenv = "CartPole-v1"\n[evolution]\nevery_steps = -1\n')
    with pytest.raises(ConfigError, match="must be >= 0"):
        load_scenario(str(path))
