"""What an agent does when it notices its world changed: its strategy, decided by :class:`Adapter`.

- ``lifelong`` (the default): remember the policy the context that just ended had before its
  returns fell (``library.ContextMemory``), try every remembered policy, every peer's latest
  snapshot and an untrained network (``fresh``) against the current one on a few sandbox
  episodes, adopt the best if it clearly beats the current one, keep learning from there. A
  world that comes back is met with the policy that mastered it: no relearning. A world where
  untrained weights do better than everything the agent knows is one where its knowledge
  misleads it: it starts over, as ``scratch`` would.
- ``finetune``: keep training the one policy (what plain SB3 does); the drift is only counted.
- ``scratch``: start over: fresh random weights, optimiser, replay buffer and schedules.

A drop of the returns (:class:`~agents.learner.drift_detector.DropDetector`) is first
confirmed on the sandbox (:mod:`agents.learner.sandbox`, a twin of the device in its current
conditions): the current policy must score there clearly below the best the context had.
An unconfirmed drop is a false alarm: nothing changes and the detector is snoozed. A
coordinator's directive to adopt a peer's weights is checked on the sandbox the same way and
declined when the weights do clearly worse on this device. Sandbox steps are counted as
``adaptation_steps`` and reported.

:class:`Adapter` makes these decisions. It owns the drift detector and the current
context's memory, is fed every finished episode, and acts between rollouts; it changes the
learner only through the small interface :class:`Adaptable` names.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy

from agents._choice import Choice
from agents.bus.arrays import Tensor
from agents.bus.schemas import HyperValue, Lineage
from agents.learner.drift_detector import DropDetector, ShiftDetector
from agents.learner.library import ContextMemory, LibraryEntry, PolicyLibrary
from agents.learner.peers import PeerSnapshots
from agents.learner.sandbox import Candidate, Trial, TrialRun
from agents.learner.snapshots import policy_tensors
from agents.learner.stats import LearnerStats

__all__ = [
    "FRESH",
    "PRIMARY_CLONE",
    "Adaptable",
    "Adaptation",
    "AdaptationEvents",
    "Adapter",
    "Adoption",
    "Strategy",
    "choose",
    "reinitialise",
    "reset_optimizers",
]

log = logging.getLogger(__name__)

#: Episodes over which the current context's performance is judged.
_WINDOW = 20
#: Episodes that must have finished in a context before its policy is worth remembering.
_MIN_EPISODES_TO_REMEMBER = 5
#: A drop is confirmed when the current policy scores this much (relative) below the best.
_CONFIRM_DROP = 0.10
#: Episodes without alarms after an alarm the sandbox did not confirm.
_SNOOZE_EPISODES = 10


PRIMARY_CLONE = 0
"""The library context of the recorded controller's clone, kept when the agent started from
another controller's (contexts below it: the other controllers' clones, other_controllers.py)."""

FRESH = "fresh"
"""The label of the untrained candidate a lifelong agent tries beside what it remembers."""


class Strategy(Choice):
    LIFELONG = "lifelong"
    FINETUNE = "finetune"
    SCRATCH = "scratch"

    @classmethod
    def setting(cls) -> str:
        return "strategy"


def choose(trials: list[Trial], *, margin: float = 0.02) -> Trial | None:
    """The best trial if it beats the current policy's by more than ``margin`` (relative).

    The margin keeps the agent from swapping policies on noise. Returns None to keep the
    current policy.
    """
    current = next((t for t in trials if t.candidate.label == "current"), None)
    if current is None or len(trials) < 2:  # noqa: PLR2004 - current plus one other
        return None
    best = max(trials, key=lambda t: t.score)
    if best is current:
        return None
    needed = current.score + margin * max(abs(current.score), 1e-6)
    return best if best.score > needed else None


def reset_optimizers(policy: BasePolicy) -> None:
    """New optimiser state for new weights: old moment estimates belong to the old ones."""
    for module in policy.modules():
        optimizer = getattr(module, "optimizer", None)
        if isinstance(optimizer, torch.optim.Optimizer):
            params = [p for group in optimizer.param_groups for p in group["params"]]
            fresh = type(optimizer)(params, **optimizer.defaults)
            for group, old in zip(fresh.param_groups, optimizer.param_groups, strict=True):
                group["lr"] = old["lr"]
            setattr(module, "optimizer", fresh)  # noqa: B010 - torch types it as a submodule


def reinitialise(model: BaseAlgorithm, make_policy: Callable[[], BasePolicy]) -> None:
    """Start over in place: fresh random weights, optimisers and (off-policy) replay buffer.

    The objects stay the same (SB3 holds references to them mid-rollout); their contents are
    replaced.
    """
    fresh = make_policy()
    model.policy.load_state_dict(fresh.state_dict())
    reset_optimizers(model.policy)
    if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
        model.replay_buffer.reset()


def _confirmed(best: float, current: float) -> bool:
    """Whether ``current`` is clearly below ``best``: by ``_CONFIRM_DROP`` of its size."""
    return current < best - _CONFIRM_DROP * max(abs(best), 1e-6)


@dataclass(frozen=True, slots=True)
class Adoption:
    """Weights (or only hyperparameters) to take on between rollouts, and where from."""

    tensors: list[Tensor] | None
    lineage: Lineage | None
    hyperparams: dict[str, HyperValue]
    reason: str


@dataclass(frozen=True, slots=True)
class Adaptation:
    """What the agent did about a detected drift."""

    step: int
    strategy: str
    chosen: str
    scores: dict[str, float]
    context: int
    sandbox_steps: int


class AdaptationEvents(Protocol):
    """Where an adaptation is reported (the learner's events)."""

    def adapted(self, adaptation: Adaptation) -> None: ...


class Adaptable(Protocol):
    """The learner as the :class:`Adapter` sees it: weights, memory, counters and sandbox."""

    #: Where the current weights came from, if adopted from a peer.
    lineage: Lineage | None

    @property
    def step(self) -> int: ...

    @property
    def stats(self) -> LearnerStats: ...

    @property
    def library(self) -> PolicyLibrary: ...

    @property
    def peers(self) -> PeerSnapshots | None: ...

    @property
    def events(self) -> AdaptationEvents: ...

    def current_tensors(self) -> list[Tensor]:
        """The current policy's weights."""
        ...

    def fresh_policy(self) -> BasePolicy:
        """A randomly initialised network of the learner's architecture and spaces."""
        ...

    def load_policy(self, tensors: list[Tensor]) -> None:
        """Take on ``tensors`` as the current weights, with a new optimiser state."""
        ...

    def start_over(self, tensors: list[Tensor] | None = None) -> None:
        """Fresh weights (``tensors`` if given), optimiser, replay buffer and schedules."""
        ...

    def apply_hyperparams(self, changes: Mapping[str, HyperValue]) -> dict[str, HyperValue]:
        """Change the hyperparameters that can change mid-life; returns those applied."""
        ...

    def on_sandbox(self, candidates: Callable[[], list[Candidate]]) -> TrialRun:
        """Play ``candidates()`` on a fresh twin of the device, in its current conditions."""
        ...

    def forget_plans(self) -> None:
        """Drop what was planned in hindsight for the world that changed."""
        ...


class Adapter:
    """Decides what the agent does about drift, false alarms and directives (module docstring).

    Fed each finished episode's score (:meth:`observe`); between rollouts it takes on a
    directive's weights (:meth:`adopt`) and acts on a drop the detector saw (:meth:`adapt`,
    when :attr:`drift_pending`).
    """

    def __init__(
        self,
        learner: Adaptable,
        strategy: Strategy = Strategy.LIFELONG,
        *,
        check_adoptions: bool = True,
    ) -> None:
        self.learner = learner
        self.strategy = strategy
        #: Play a directive's weights on the sandbox first; decline them if clearly worse.
        self.check_adoptions = check_adoptions
        self.detector = DropDetector()
        #: Watches the controller's own returns on the agent's episodes (the shadow's): the
        #: world changed when they move, whatever the agent's score says.
        self.world = ShiftDetector()
        #: The pending adaptation is for a change of the world, not a drop of the agent's score.
        self.world_changed = False
        # The current context's recent scores, and its policies worth remembering.
        self.recent: deque[float] = deque(maxlen=_WINDOW)
        self.context_episodes = 0
        self.memory = ContextMemory(horizon=self.detector.history_length)
        self.watched_until = 0  # the context's last episode the drift detector was shown
        #: The detector saw a drop: :meth:`adapt` acts on it between rollouts.
        self.drift_pending = False

    # -- after every episode ------------------------------------------------------------------

    def observe(self, score: float, step: int, controller_return: float | None = None) -> None:
        """Judge the agent on its own recent episodes: remember its best, watch for drift.

        ``score`` is what the agent is judged by: the return, or its advantage over the
        baseline on the same episode (``judge_against_baseline``). ``controller_return`` is the
        baseline controller's return on the same episode, where a shadow twin plays it: a clear
        move of it is a change of the world even when ``score`` does not show one.
        """
        learner = self.learner
        self.recent.append(score)
        self.context_episodes += 1
        window_mean = float(np.mean(self.recent))
        if self.context_episodes >= _MIN_EPISODES_TO_REMEMBER:
            self.memory.offer(
                self.context_episodes,
                self.recent,
                lambda mean: LibraryEntry(
                    context=learner.stats.context,
                    tensors=learner.current_tensors(),
                    score=mean,
                    step=step,
                    lineage=learner.lineage,
                ),
            )
        if self.drift_pending:
            return
        self.watched_until = self.context_episodes
        if self.detector.update(score):
            self.drift_pending = True
            log.info(
                "returns dropped at step %d (context %d, recent mean %.2f)",
                step, learner.stats.context, window_mean,
            )  # fmt: skip
        elif (
            controller_return is not None
            and self.strategy is Strategy.LIFELONG
            and self.world.update(controller_return)
        ):
            self.drift_pending = self.world_changed = True
            log.info("the controller's returns moved at step %d: the world changed", step)

    # -- between rollouts ---------------------------------------------------------------------

    def adopt(self, adoption: Adoption) -> None:
        """Take on a peer's weights and/or new hyperparameters (a coordinator's directive).

        The coordinator ranked the peer's snapshot on the peer's own device; this agent's
        device may differ (another intersection, another house). So the weights are first
        played against the current policy on the sandbox, and declined when they do clearly
        worse here; the new hyperparameters (the exploring half of the directive) apply anyway.

        Weights taken on end the current context, as a drift does: the policy it had is
        remembered in the library first (what the agent learned must not go with the weights
        that replace it), and the adopted weights start a new context. A directive can arrive
        just as the world changes (evolution counts steps, and so may a drift schedule); its
        reset of the drift detector then hides the change, and without this the policy for
        the world that ended was lost.
        """
        learner, stats = self.learner, self.learner.stats
        tensors = adoption.tensors
        declined = False
        if tensors is not None and (not self.check_adoptions or self._fits_here(tensors)):
            if self.strategy is Strategy.LIFELONG:
                self._remember_context(dropped_at=self.context_episodes)
                stats.context = max([stats.context, *learner.library.entries]) + 1
            learner.load_policy(tensors)
            learner.lineage = adoption.lineage
            stats.adoptions += 1
        elif tensors is not None:
            stats.adoptions_declined += 1
            declined = True
        applied = learner.apply_hyperparams(adoption.hyperparams)
        lineage = adoption.lineage
        source = f"{lineage.agent}@v{lineage.version}" if lineage else "own weights"
        if declined:
            log.info(
                "declined %s's weights (%s): clearly worse on this device; hyperparameters %s",
                source, adoption.reason, applied,
            )  # fmt: skip
        else:
            log.info("adopted %s (%s), hyperparameters %s", source, adoption.reason, applied)
        # The context's best so far was another policy's: judge the new one afresh.
        self._forget_context()

    def adapt(self) -> None:
        """Act on a drop of the returns according to the strategy.

        First the drop is confirmed on the sandbox: the current policy, played there, must
        score clearly below the best this context had (``_CONFIRM_DROP``). A drop that is not
        confirmed is a false alarm (learning noise, an unlucky run): nothing changes and the
        detector is snoozed. A confirmed drift ends the context: ``lifelong`` remembers the
        policy the context had before its returns fell and adopts the best of its library, its
        peers' snapshots and untrained weights, ``scratch`` starts over, ``finetune`` carries on.
        """
        self.drift_pending = False
        learner, stats = self.learner, self.learner.stats
        strategy = self.strategy
        step = learner.step
        if self.world_changed:
            self.world_changed = False
            self._world_changed()
            return
        if strategy is Strategy.FINETUNE:
            self._new_context(Adaptation(step, strategy.value, "current", {}, 0, 0))
            return
        run = learner.on_sandbox(lambda: [Candidate("current", learner.current_tensors())])
        current = run.trials[0].score if run.trials else None
        best_score = self.memory.best_score
        if best_score is not None and current is not None and not _confirmed(best_score, current):
            stats.false_alarms += 1
            stats.adaptation_steps += run.steps
            self.detector.snooze(_SNOOZE_EPISODES)
            log.info("drop not confirmed on the sandbox (%.2f vs best %.2f)", current, best_score)
            return
        chosen = "current"
        scores = run.scores()
        context = max([stats.context, *learner.library.entries]) + 1
        if strategy is Strategy.LIFELONG:
            self._remember_context(
                dropped_at=self.watched_until - self.detector.episodes_since_change()
            )
            others = learner.on_sandbox(self._candidates)
            run.steps += others.steps
            scores.update(others.scores())
            winner = choose(run.trials + others.trials)
            if winner is not None and winner.candidate.label == FRESH:
                # Untrained weights play this world better than anything it knows: what it
                # knows hurts here (negative transfer), so it starts over from those weights.
                learner.start_over(winner.candidate.tensors)
                chosen = FRESH
            elif winner is not None:
                learner.load_policy(winner.candidate.tensors)
                chosen = winner.candidate.label
                recalled = self._recalled(winner, step)
                context = context if recalled is None else recalled
                if winner.candidate.lineage is not None:
                    learner.lineage = winner.candidate.lineage
        elif strategy is Strategy.SCRATCH:
            learner.start_over()
            chosen = "scratch"
        stats.adaptations += chosen != "current"
        stats.adaptation_steps += run.steps
        self._new_context(Adaptation(step, strategy.value, chosen, scores, context, run.steps))

    def start_from_best_controller(self) -> str:
        """At takeover from the recorded history: start from the best of the device's controllers.

        The primary controller's clone (the current policy) is played on the sandbox against
        the other controllers' clones in the library (other_controllers.py); a clear winner
        (2 %) becomes the current policy, and the primary's clone is kept in the library as
        context 0, so that it can be recalled in turn. Returns the label of the policy started
        from: ``current`` or ``library:<context>``.
        """
        learner, stats = self.learner, self.learner.stats
        clones = [
            Candidate(f"library:{entry.context}", entry.tensors, entry.context)
            for entry in learner.library.entries.values()
            if entry.context < 0
        ]
        if not clones:
            return "current"
        primary = learner.current_tensors()
        run = learner.on_sandbox(lambda: [Candidate("current", primary), *clones])
        stats.adaptation_steps += run.steps
        winner = choose(run.trials)
        if winner is None or winner.candidate.context is None:
            return "current"
        learner.library.store(
            LibraryEntry(context=PRIMARY_CLONE, tensors=primary, score=0.0, step=learner.step)
        )
        learner.load_policy(winner.candidate.tensors)
        learner.library.touch(winner.candidate.context, learner.step)
        log.info(
            "starting from %s, not the recorded controller's clone: %s",
            winner.candidate.label, run.scores(),
        )  # fmt: skip
        return winner.candidate.label

    def _world_changed(self) -> None:
        """The world changed though the agent's score did not drop: is something else better now?

        Every candidate a drift would bring (the library, with the device's other controllers,
        the peers' snapshots, untrained weights) is tried against the current policy on the
        sandbox. Either way the context ends, as after a drift, and its policy is remembered;
        a clear winner takes over, otherwise the current policy carries on in the new context.
        """
        learner, stats = self.learner, self.learner.stats
        step = learner.step
        run = learner.on_sandbox(
            lambda: [Candidate("current", learner.current_tensors()), *self._candidates()]
        )
        stats.adaptation_steps += run.steps
        self.world.reset()
        winner = choose(run.trials)
        context = max([stats.context, *learner.library.entries]) + 1
        self._remember_context(dropped_at=self.context_episodes)
        if winner is None or winner.candidate.label == FRESH:
            # Nothing does clearly better, but the world did change: a new context with the
            # current policy, the old one's remembered, so that it can be recalled when that
            # world comes back instead of relearned (a policy good in both seasons is not
            # good in both forever: what it learns in one wears down the other).
            log.info("the world changed at step %d; the current policy is still the best", step)
            self._new_context(
                Adaptation(step, self.strategy.value, "current", run.scores(), context, run.steps)
            )
            return
        learner.load_policy(winner.candidate.tensors)
        recalled = self._recalled(winner, step)
        context = context if recalled is None else recalled
        learner.lineage = winner.candidate.lineage
        stats.adaptations += 1
        self._new_context(
            Adaptation(step, self.strategy.value, winner.candidate.label, run.scores(), context,
                       run.steps)
        )  # fmt: skip

    # -- the pieces ---------------------------------------------------------------------------

    def _fits_here(self, tensors: list[Tensor]) -> bool:
        """Whether ``tensors`` do not do clearly worse than the current policy on the sandbox."""
        learner = self.learner
        run = learner.on_sandbox(
            lambda: [Candidate("current", learner.current_tensors()), Candidate("peer", tensors)]
        )
        learner.stats.adaptation_steps += run.steps
        scores = run.scores()
        if "peer" not in scores:
            return False  # it does not even fit the network
        return not _confirmed(scores["current"], scores["peer"])

    def _remember_context(self, *, dropped_at: int) -> None:
        """Store the policy the context had by its episode ``dropped_at`` (ContextMemory)."""
        learner = self.learner
        remembered = self.memory.before(dropped_at)
        if remembered is not None:
            learner.library.store(remembered)
            log.info(
                "remembering context %d: its policy at step %d (window %.2f, best %.2f), "
                "as of its episode %d of %d",
                learner.stats.context, remembered.step, remembered.score,
                self.memory.best_score, dropped_at, self.watched_until,
            )  # fmt: skip

    def _recalled(self, winner: Trial, step: int) -> int | None:
        """The context ``winner`` was learned in, if it does here what it did there.

        Then that world came back. Otherwise the winner is only a head start in a new world:
        its context's entry stays as it was, so the world it was learned in can be recalled.
        """
        library = self.learner.library
        context = winner.candidate.context
        remembered = None if context is None else library.get(context)
        if remembered is not None and remembered.context <= PRIMARY_CLONE:
            # Another controller's clone (other_controllers.py): no world it was learned in
            # came back; it stays as it is for the next time, and counts as just used.
            library.touch(remembered.context, step)
            return None
        if remembered is None or _confirmed(remembered.score, winner.score):
            return None
        library.touch(remembered.context, step)
        return remembered.context

    def _candidates(self) -> list[Candidate]:
        """Every remembered policy, every peer's latest snapshot, and untrained weights."""
        learner = self.learner
        remembered = [
            Candidate(f"library:{entry.context}", entry.tensors, entry.context, entry.lineage)
            for entry in learner.library.entries.values()
        ]
        peers = [
            Candidate(
                f"peer:{peer.agent}@v{peer.version}",
                peer.tensors,
                lineage=Lineage(agent=peer.agent, version=peer.version),
            )
            for peer in (learner.peers.latest() if learner.peers is not None else [])
        ]
        fresh = Candidate(FRESH, policy_tensors(learner.fresh_policy()))
        return [*remembered, *peers, fresh]

    def _new_context(self, adaptation: Adaptation) -> None:
        stats = self.learner.stats
        stats.drift_events += 1
        stats.context = adaptation.context or stats.context + 1
        self._forget_context()
        self.learner.forget_plans()
        log.info(
            "drift at step %d (%s): %s -> context %d",
            adaptation.step, adaptation.strategy, adaptation.chosen, stats.context,
        )  # fmt: skip
        self.learner.events.adapted(replace(adaptation, context=stats.context))

    def _forget_context(self) -> None:
        """Judge afresh: a new context, or another policy in this one."""
        self.detector.reset()
        self.world.reset()
        self.recent.clear()
        self.context_episodes = 0
        self.memory.clear()
