"""What the agent does on a detected drift, per strategy, with real worlds and networks.

A hand-built CartPole balancer (a linear rule on pole angle and angular velocity, written
into the PPO network's weights) stands in for a policy learned in one regime; its mirror
image is what works once the motor is wired backwards.
"""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN

from agents.bus.arrays import Tensor
from agents.bus.schemas import HyperValue, Lineage, PolicySnapshot, SpaceSpec
from agents.learner.adaptation import PRIMARY_CLONE, Strategy
from agents.learner.envs import DriftPlan
from agents.learner.learner import Learner, LearnerConfig
from agents.learner.library import LibraryEntry, PolicyLibrary
from agents.learner.peers import PeerSnapshots
from agents.learner.snapshots import load_tensors, policy_tensors
from tests import factories
from tests.learner.test_learner import Recorder

ARCH = {"n_steps": 64, "batch_size": 32, "n_epochs": 1}


def learner(
    tmp_path: Path, *, strategy: Strategy, regime: str = "earth", algo: str = "ppo"
) -> tuple[Learner, Recorder]:
    events = Recorder()
    config = LearnerConfig(
        env_id="CartPole-v1", algo=algo, seed=0, strategy=strategy, checkpoint_dir=tmp_path,
        hyperparams=ARCH if algo == "ppo" else {"learning_starts": 10, "buffer_size": 1000},
        drift=DriftPlan(((regime, 10_000),)), adapt_episodes=2,
    )  # fmt: skip
    return Learner(config, events), events


def balancer(learner: Learner, *, mirrored: bool = False) -> list[Tensor]:
    """Weights that push the cart toward the side the pole falls to (or away, mirrored)."""
    state = {k: torch.zeros_like(v) for k, v in learner.model.policy.state_dict().items()}
    state["mlp_extractor.policy_net.0.weight"][0] = torch.tensor([0.0, 0.0, 10.0, 2.0])
    state["mlp_extractor.policy_net.2.weight"][0, 0] = 10.0
    sign = -1.0 if mirrored else 1.0
    state["action_net.weight"][0, 0] = -10.0 * sign
    state["action_net.weight"][1, 0] = 10.0 * sign
    policy = learner.fresh_policy()
    policy.load_state_dict(state)
    return policy_tensors(policy)


def adopted_from(agent: Learner, lineage: Lineage) -> None:
    """As if ``agent`` had adopted a peer's weights earlier in its life."""
    agent.lineage = lineage


def entry(context: int, tensors: list[Tensor]) -> LibraryEntry:
    return LibraryEntry(context=context, tensors=tensors, score=400.0, step=1000)


def test_lifelong_adopts_the_remembered_policy_that_fits_the_world(tmp_path: Path) -> None:
    agent, events = learner(tmp_path, strategy=Strategy.LIFELONG, regime="reversed_motor")
    agent.library.store(entry(1, balancer(agent)))
    agent.library.store(entry(2, balancer(agent, mirrored=True)))
    agent.stats.context = 3
    agent.adapter.adapt()
    (adaptation,) = events.adaptations
    # With the motor reversed, only the mirrored balancer keeps the pole up.
    assert adaptation.chosen == "library:2"
    assert adaptation.scores["library:2"] > 150
    assert adaptation.scores["library:1"] < 50
    assert agent.stats.context == 2  # back in the context that rule was learned in
    assert adaptation.sandbox_steps > 0
    current = policy_tensors(agent.model.policy)
    assert [t.data for t in current] == [t.data for t in balancer(agent, mirrored=True)]


def test_a_remembered_policy_that_is_only_a_head_start_does_not_take_over_its_context(
    tmp_path: Path,
) -> None:
    agent, events = learner(tmp_path, strategy=Strategy.LIFELONG, regime="reversed_motor")
    mirrored = balancer(agent, mirrored=True)
    # It wins on the sandbox, but far below what it scored where it was learned.
    agent.library.store(LibraryEntry(context=2, tensors=mirrored, score=10_000.0, step=1000))
    agent.stats.context = 3
    agent.adapter.adapt()
    (adaptation,) = events.adaptations
    assert adaptation.chosen == "library:2"
    assert agent.stats.context == 4  # a new world, not context 2 come back
    assert [t.data for t in policy_tensors(agent.model.policy)] == [t.data for t in mirrored]
    kept = agent.library.get(2)
    assert kept is not None
    assert kept.score == 10_000.0
    assert kept.step == 1000  # not touched: it was not recalled


def test_lifelong_keeps_its_policy_when_nothing_remembered_is_better(tmp_path: Path) -> None:
    agent, events = learner(tmp_path, strategy=Strategy.LIFELONG)
    load_tensors(agent.model.policy, balancer(agent))
    agent.library.store(entry(1, balancer(agent, mirrored=True)))  # useless on earth
    before = policy_tensors(agent.model.policy)
    agent.adapter.adapt()
    (adaptation,) = events.adaptations
    assert adaptation.chosen == "current"
    assert agent.stats.context == 2  # a new context
    assert [t.data for t in policy_tensors(agent.model.policy)] == [t.data for t in before]


def test_trying_candidates_leaves_the_learners_random_streams_where_they_were(
    tmp_path: Path,
) -> None:
    # Untrained weights and a fresh network for the trials are drawn on the sandbox; the agent
    # keeps its policy, and must then learn on exactly as an agent that never looked.
    agent, events = learner(tmp_path, strategy=Strategy.LIFELONG)
    load_tensors(agent.model.policy, balancer(agent))  # nothing beats it on earth
    torch_state = torch.random.get_rng_state()
    numpy_state = np.random.get_state(legacy=False)  # noqa: NPY002 - what SB3 draws from
    python_state = random.getstate()
    agent.adapter.adapt()
    (adaptation,) = events.adaptations
    assert (adaptation.chosen, "fresh" in adaptation.scores) == ("current", True)
    assert adaptation.sandbox_steps > 0
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    numpy_after = np.random.get_state(legacy=False)  # noqa: NPY002
    assert np.array_equal(numpy_after["state"]["key"], numpy_state["state"]["key"])
    assert numpy_after["state"]["pos"] == numpy_state["state"]["pos"]
    assert random.getstate() == python_state


def test_lifelong_starts_over_where_what_it_knows_does_worse_than_nothing(
    tmp_path: Path,
) -> None:
    # The balancer, with the motor reversed, throws the pole over faster than untrained
    # weights let it fall: knowing nothing beats knowing the wrong world.
    agent, events = learner(tmp_path, strategy=Strategy.LIFELONG, regime="reversed_motor")
    load_tensors(agent.model.policy, balancer(agent))
    agent.schedule_origin.step = 0
    agent.model.num_timesteps = 5000
    adopted_from(agent, Lineage(agent="teacher", version=3))
    agent.adapter.adapt()
    (adaptation,) = events.adaptations
    assert adaptation.chosen == "fresh"
    assert adaptation.scores["fresh"] > adaptation.scores["current"]
    after = policy_tensors(agent.model.policy)
    assert any(a.data != b.data for a, b in zip(after, balancer(agent), strict=True))
    assert agent.schedule_origin.step == 5000  # schedules start over with the weights
    assert agent.lineage is None
    assert agent.stats.adaptations == 1


def test_lifelong_tries_peers_snapshots_and_records_the_lineage(tmp_path: Path) -> None:
    agent, events = learner(tmp_path, strategy=Strategy.LIFELONG)
    peers = PeerSnapshots(
        env_id="CartPole-v1", algo="ppo", obs_space=agent.obs_spec,
        action_space=agent.action_spec, arch=agent.arch, own_id="me",
    )  # fmt: skip
    good = balancer(agent)
    snapshot = PolicySnapshot(
        schema=1, agent="teacher", version=7, step=9000, algo="ppo", env_id="CartPole-v1",
        obs_space=agent.obs_spec, action_space=agent.action_spec, arch=agent.arch,
        tensors=good, digest="",
    )  # fmt: skip
    assert peers.offer(snapshot)
    agent.peers = peers
    agent.adapter.adapt()
    assert events.adaptations[0].chosen == "peer:teacher@v7"
    assert agent.lineage is not None
    assert (agent.lineage.agent, agent.lineage.version) == ("teacher", 7)


def test_peers_that_do_not_fit_are_ignored() -> None:
    box = factories.BOX4
    peers = PeerSnapshots(
        env_id="CartPole-v1", algo="ppo", obs_space=box, action_space=factories.DISCRETE2,
        arch=factories.snapshot().arch, own_id="me",
    )  # fmt: skip
    assert peers.offer(factories.snapshot(agent="a1", version=2))
    assert not peers.offer(factories.snapshot(agent="a1", version=1))  # older
    assert not peers.offer(factories.snapshot(agent="me", version=9))  # ourselves
    other_space = SpaceSpec(kind="discrete", shape=[], dtype="int64", n=3)
    assert not peers.offer(
        msgspec.structs.replace(factories.snapshot("a2"), action_space=other_space)
    )
    assert not peers.offer(msgspec.structs.replace(factories.snapshot("a3"), algo="dqn"))
    assert [p.agent for p in peers.latest()] == ["a1"]
    assert peers.ignored == 3  # an older version is not 'ignored', just not newer


def test_snapshots_from_unlike_devices_are_not_kept() -> None:
    """Another house's policy is no candidate here: no parameter may be twice the other's."""
    house = {"r_k_per_kw": 4.0, "wfh_prob": 0.3}
    peers = PeerSnapshots(
        env_id="CartPole-v1", algo="ppo", obs_space=factories.BOX4,
        action_space=factories.DISCRETE2, arch=factories.snapshot().arch, own_id="me",
        device=house,
    )  # fmt: skip

    def announcing(agent: str, device: dict[str, HyperValue]) -> PolicySnapshot:
        return msgspec.structs.replace(factories.snapshot(agent), env_kwargs=device)

    assert peers.offer(announcing("alike", {"r_k_per_kw": 5.0, "wfh_prob": 0.4}))
    assert not peers.offer(announcing("unlike", {"r_k_per_kw": 4.0, "wfh_prob": 0.01}))
    assert [p.agent for p in peers.latest()] == ["alike"]
    assert (peers.unlike, peers.ignored) == (1, 0)


def test_finetune_only_counts_the_drift(tmp_path: Path) -> None:
    agent, events = learner(tmp_path, strategy=Strategy.FINETUNE)
    before = policy_tensors(agent.model.policy)
    agent.adapter.adapt()
    assert events.adaptations[0].chosen == "current"
    assert events.adaptations[0].scores == {}
    assert agent.stats.adaptations == 0
    assert [t.data for t in policy_tensors(agent.model.policy)] == [t.data for t in before]


def test_scratch_starts_over_weights_buffer_and_exploration(tmp_path: Path) -> None:
    agent, events = learner(tmp_path, strategy=Strategy.SCRATCH, algo="dqn")
    agent.model.learn(300)
    assert isinstance(agent.model, DQN)
    assert agent.model.replay_buffer is not None
    assert agent.model.replay_buffer.size() > 0
    before = policy_tensors(agent.model.policy)
    agent.model.num_timesteps = 50_000  # far past exploration_steps: epsilon at its floor
    assert agent.model.exploration_schedule(1.0) == pytest.approx(0.05)
    agent.adapter.adapt()
    assert events.adaptations[0].chosen == "scratch"
    assert agent.model.replay_buffer.size() == 0
    after = policy_tensors(agent.model.policy)
    assert any(a.data != b.data for a, b in zip(after, before, strict=True))
    assert agent.model.exploration_schedule(1.0) == pytest.approx(1.0)  # explores again


def test_the_library_survives_a_restart(tmp_path: Path) -> None:
    agent, _ = learner(tmp_path, strategy=Strategy.LIFELONG)
    agent.library.store(entry(4, balancer(agent)))
    agent.stats.context = 5
    agent.stats.drift_events = 3
    agent.checkpoint()
    again, _ = learner(tmp_path, strategy=Strategy.LIFELONG)
    assert list(again.library.entries) == [4]
    assert again.stats.context == 5
    assert again.stats.drift_events == 3
    stored = again.library.get(4)
    assert stored is not None
    assert [t.data for t in stored.tensors] == [t.data for t in balancer(agent)]


def test_library_keeps_one_policy_per_context_and_drops_the_oldest() -> None:
    library = PolicyLibrary(capacity=2)
    weights = [Tensor("w", "float32", [1], np.zeros(1, np.float32).tobytes())]
    library.store(LibraryEntry(context=1, tensors=weights, score=1.0, step=10))
    library.store(LibraryEntry(context=1, tensors=weights, score=2.0, step=20))
    library.store(LibraryEntry(context=2, tensors=weights, score=3.0, step=30))
    library.store(LibraryEntry(context=3, tensors=weights, score=4.0, step=40))
    assert sorted(library.entries) == [2, 3]


def test_the_library_keeps_the_policy_the_context_ended_with_not_its_luckiest_window(
    tmp_path: Path,
) -> None:
    agent, _ = learner(tmp_path, strategy=Strategy.LIFELONG)
    earlier, final = balancer(agent), balancer(agent, mirrored=True)
    after_change = policy_tensors(agent.fresh_policy())
    lives = [
        # An earlier policy with a lucky start: its 5-episode window (118) is the best any has.
        (earlier, [150.0, 70.0] * 5),
        # The policy the context ended with: as good within the noise (110), and newer.
        (final, [112.0, 108.0] * 10),
        # The world changed: the windows still hold mostly old returns for two episodes
        # (106.5, 102.5: within one standard error of 118) while the weights already train
        # on the new world.
        (after_change, [40.0, 30.0, 20.0, 15.0, 10.0]),
    ]
    step = 0
    for tensors, scores in lives:
        load_tensors(agent.model.policy, tensors)
        for score in scores:
            step += 100
            agent.adapter.observe(score, step)
    agent.adapter.adapt()
    stored = agent.library.get(1)
    assert stored is not None
    assert [t.data for t in stored.tensors] == [t.data for t in final]
    assert stored.score == pytest.approx(110.0)


def test_an_alarm_the_sandbox_does_not_confirm_changes_nothing(tmp_path: Path) -> None:
    agent, events = learner(tmp_path, strategy=Strategy.LIFELONG)
    load_tensors(agent.model.policy, balancer(agent))
    for episode in range(30):  # the context's best: balancing, 500 a time
        agent.adapter.observe(500.0, 500 * (episode + 1))
    agent.library.store(entry(1, balancer(agent, mirrored=True)))
    context, before = agent.stats.context, policy_tensors(agent.model.policy)
    agent.adapter.adapt()  # the detector's alarm; the sandbox shows the policy still at 500
    assert agent.stats.false_alarms == 1
    assert events.adaptations == []
    assert agent.stats.context == context
    assert [t.data for t in policy_tensors(agent.model.policy)] == [t.data for t in before]
    # Where the policy really does worse than its best, the drop is confirmed and acted on.
    load_tensors(agent.model.policy, balancer(agent, mirrored=True))
    agent.adapter.adapt()
    assert agent.stats.false_alarms == 1
    (adaptation,) = events.adaptations
    assert adaptation.chosen != "current"


def test_a_change_of_the_world_its_score_does_not_show_brings_a_better_policy_in(
    tmp_path: Path,
) -> None:
    # The agent scores a steady 200 (its score never drops), but the controller's returns on
    # the same episodes fall from 500 to 100: the world changed. The wiring is reversed, so
    # the mirrored balancer the library holds (another controller's clone, context -1) is
    # tried and takes over, in a new context; the clone stays in the library as it was.
    agent, events = learner(tmp_path, strategy=Strategy.LIFELONG, regime="reversed_motor")
    load_tensors(agent.model.policy, balancer(agent))
    agent.library.store(
        LibraryEntry(context=-1, tensors=balancer(agent, mirrored=True), score=0.0, step=10)
    )
    for episode in range(40):
        agent.adapter.observe(200.0, 100 * (episode + 1), controller_return=500.0 + episode % 3)
        assert not agent.adapter.drift_pending
    for episode in range(40, 60):
        agent.adapter.observe(200.0, 100 * (episode + 1), controller_return=100.0 + episode % 3)
        if agent.adapter.drift_pending:
            break
    assert agent.adapter.drift_pending
    agent.model.num_timesteps = 6_000
    agent.adapter.adapt()
    (adaptation,) = events.adaptations
    assert adaptation.chosen == "library:-1"
    assert agent.stats.context == 2  # a new context: no world of the clone's came back
    assert agent.stats.false_alarms == 0
    mirrored = balancer(agent, mirrored=True)
    assert [t.data for t in policy_tensors(agent.model.policy)] == [t.data for t in mirrored]
    clone = agent.library.get(-1)
    assert clone is not None
    assert clone.step == 6_000  # touched: just used
    assert agent.library.get(1) is not None  # the context that ended is remembered


def test_a_change_of_the_world_where_the_current_policy_stays_best_starts_a_context(
    tmp_path: Path,
) -> None:
    agent, events = learner(tmp_path, strategy=Strategy.LIFELONG)  # normal wiring
    load_tensors(agent.model.policy, balancer(agent))
    agent.library.store(
        LibraryEntry(context=-1, tensors=balancer(agent, mirrored=True), score=0.0, step=10)
    )
    for episode in range(60):
        level = 500.0 if episode < 40 else 100.0
        agent.adapter.observe(500.0, 100 * (episode + 1), controller_return=level + episode % 3)
        if agent.adapter.drift_pending:
            break
    assert agent.adapter.drift_pending
    before = policy_tensors(agent.model.policy)
    agent.adapter.adapt()
    # The weights stay; the world that was is remembered, to be recalled when it comes back.
    (adaptation,) = events.adaptations
    assert adaptation.chosen == "current"
    assert agent.stats.false_alarms == 0
    assert agent.stats.adaptations == 0
    assert agent.stats.context == 2
    assert agent.stats.adaptation_steps > 0
    assert [t.data for t in policy_tensors(agent.model.policy)] == [t.data for t in before]
    remembered = agent.library.get(1)
    assert remembered is not None
    assert [t.data for t in remembered.tensors] == [t.data for t in before]


def test_at_takeover_the_agent_starts_from_the_best_of_its_devices_controllers(
    tmp_path: Path,
) -> None:
    # The recorded controller's clone (the current policy) is the plain balancer; the wiring is
    # reversed, so the other controller's clone (the mirrored balancer) does far better there.
    agent, _ = learner(tmp_path, strategy=Strategy.LIFELONG, regime="reversed_motor")
    primary, mirrored = balancer(agent), balancer(agent, mirrored=True)
    load_tensors(agent.model.policy, primary)
    agent.library.store(LibraryEntry(context=-1, tensors=mirrored, score=0.0, step=10))
    agent.model.num_timesteps = 2_000
    assert agent.adapter.start_from_best_controller() == "library:-1"
    assert [t.data for t in policy_tensors(agent.model.policy)] == [t.data for t in mirrored]
    kept = agent.library.get(PRIMARY_CLONE)  # the recorded controller's clone, kept
    assert kept is not None
    assert [t.data for t in kept.tensors] == [t.data for t in primary]
    assert agent.stats.context == 1  # not a drift: the agent has not lived a context yet
    assert agent.stats.drift_events == 0
    assert agent.stats.adaptation_steps > 0
    # Where the recorded controller's clone is the best, it stays; nothing else is stored.
    other, _ = learner(tmp_path / "other", strategy=Strategy.LIFELONG)  # normal wiring
    load_tensors(other.model.policy, balancer(other))
    other.library.store(
        LibraryEntry(context=-1, tensors=balancer(other, mirrored=True), score=0.0, step=10)
    )
    assert other.adapter.start_from_best_controller() == "current"
    assert sorted(other.library.entries) == [-1]
