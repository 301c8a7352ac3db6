"""The scenario file format, as typed structs, and loading with errors that name the field."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import msgspec

from agents.bus.schemas import HyperValue
from agents.bus.topics import SHARE_KINDS
from agents.exceptions import ConfigError

__all__ = [
    "DriftSection",
    "EvaluationSection",
    "LearnerSection",
    "PolicySection",
    "Scenario",
    "SocietySection",
    "WorldSection",
    "builtin_scenarios",
    "load_scenario",
]


MAX_IMAGINATION = 64.0
"""The most imagined steps per device step a scenario may ask for (each costs CPU time)."""
MAX_HINDSIGHT = 1.0
"""The most days planned in hindsight per day lived: a day planned twice teaches nothing new."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class SocietySection(_Section):
    agents: int = 3
    #: Add an isolated control twin per agent (measures the gain from sharing).
    twins: bool = False
    #: Environment steps each agent trains before it stops (0: until stopped).
    steps: int = 30_000
    seed: int = 0


class WorldSection(_Section):
    env: str
    kwargs: dict[str, HyperValue] = {}
    #: Each member gets its own device parameters, drawn from the scenario seed and its index.
    heterogeneous: bool = False


class DriftSection(_Section):
    """A schedule of regimes over each agent's lifetime steps.

    ``phases`` lists ``[regime, steps]``; ``cyclic`` starts over at the end, so earlier regimes
    come back. ``regimes`` defines regimes of one's own (name -> parameter overrides), or
    redefines a world's built-in ones; a plain gymnasium env drifts this way too.
    """

    phases: list[tuple[str, int]]
    cyclic: bool = False
    regimes: dict[str, dict[str, HyperValue]] = {}


class PolicySection(_Section):
    net_arch: list[int] | dict[str, list[int]] | None = None
    activation: str | None = None
    options: dict[str, HyperValue] = {}


class LearnerSection(_Section):
    algo: str = "ppo"
    #: What an agent does on a detected drift: lifelong, finetune or scratch.
    strategy: str = "lifelong"
    #: What agents share and take in: experience, snapshots, evolution, federated.
    shares: list[str] = msgspec.field(default_factory=lambda: list(SHARE_KINDS))
    hyperparams: dict[str, HyperValue] = {}
    policy: PolicySection = msgspec.field(default_factory=PolicySection)
    snapshot_every: int = 5_000
    experience_batch: int = 256
    checkpoint_every: int = 10_000
    #: Judge episodes by their advantage over the world's baseline on the same episode.
    judge_against_baseline: bool = False
    #: Off-policy learners: the largest share of the replay buffer's intake from peers.
    peer_fraction: float | None = None
    #: Where learning starts: ``baseline`` (clone the world's controller from its recorded
    #: history of ``history_steps`` device steps) or ``scratch``.
    start_from: str = "scratch"
    history_steps: int = 20_000
    #: Starting from the baseline, also clone the world's other baseline controllers from that
    #: history into the library, to be recalled when the world changes.
    other_controllers: bool = True
    #: Drive the device only while the regret stays within ``guard_budget`` of the
    #: controller's cost (the controller drives otherwise).
    guard: bool = False
    guard_budget: float = 0.02
    #: Imagined steps per device step: the device's past days replayed through a model of
    #: the device it learns (imagination.py); 0: none.
    imagination: float = 0.0
    #: Remembered days planned in hindsight per day lived, the plans cloned into the policy
    #: (hindsight.py; needs ``imagination``); 0: none.
    hindsight: float = 0.0
    #: Put the world's shield between the policy and the device (shield.py): a world with
    #: none refuses it.
    shield: bool = False

    def check(self, origin: str) -> None:
        unknown = set(self.shares) - set(SHARE_KINDS)
        if unknown:
            msg = f"scenario {origin}: learner.shares has unknown kind {min(unknown)!r}"
            raise ConfigError(msg)
        if self.strategy not in {"lifelong", "finetune", "scratch"}:
            msg = (
                f"scenario {origin}: learner.strategy must be lifelong, finetune or scratch, "
                f"got {self.strategy!r}"
            )
            raise ConfigError(msg)
        if self.start_from not in {"baseline", "scratch"}:
            msg = (
                f"scenario {origin}: learner.start_from must be baseline or scratch, "
                f"got {self.start_from!r}"
            )
            raise ConfigError(msg)
        if self.history_steps < 1:
            msg = f"scenario {origin}: learner.history_steps must be >= 1, got {self.history_steps}"
            raise ConfigError(msg)
        if not 0.0 <= self.guard_budget < 1.0:
            budget = self.guard_budget
            msg = f"scenario {origin}: learner.guard_budget must be in [0, 1), got {budget}"
            raise ConfigError(msg)
        if not 0.0 <= self.imagination <= MAX_IMAGINATION:
            msg = (
                f"scenario {origin}: learner.imagination must be in [0, {MAX_IMAGINATION:g}], "
                f"got {self.imagination}"
            )
            raise ConfigError(msg)
        if not 0.0 <= self.hindsight <= MAX_HINDSIGHT:
            msg = (
                f"scenario {origin}: learner.hindsight must be in [0, {MAX_HINDSIGHT:g}], "
                f"got {self.hindsight}"
            )
            raise ConfigError(msg)
        if self.hindsight > 0 and self.imagination == 0:
            msg = f"scenario {origin}: learner.hindsight needs learner.imagination > 0"
            raise ConfigError(msg)
        fraction = self.peer_fraction
        if fraction is not None and not 0.0 <= fraction < 1.0:
            msg = f"scenario {origin}: learner.peer_fraction must be in [0, 1), got {fraction}"
            raise ConfigError(msg)


class EvaluationSection(_Section):
    episodes: int = 5
    seed: int = 10_000
    #: The evaluation return that counts as learned (steps to it measure the sharing gain).
    threshold: float | None = None
    #: What ``threshold`` measures (agents.coordinator.sharing.ThresholdScale): ``return``,
    #: ``normalised`` (0: random controller, 1: baseline) or ``over_baseline`` (the share by
    #: which the agent beats the baseline on the same episodes; 0.1: 10 % better).
    threshold_scale: Literal["return", "normalised", "over_baseline"] | None = None
    #: The older spelling of ``threshold_scale = "normalised"``.
    threshold_normalised: bool = False
    #: Evaluations in a row whose mean must reach the threshold (1: the first one that does).
    threshold_window: int = 1

    @property
    def scale(self) -> str:
        """The threshold's scale, from ``threshold_scale`` or the older switch."""
        if self.threshold_scale is not None:
            return self.threshold_scale
        return "normalised" if self.threshold_normalised else "return"

    def check(self, origin: str) -> None:
        if self.threshold_normalised and self.threshold_scale not in (None, "normalised"):
            msg = (
                f"scenario {origin}: evaluation.threshold_normalised = true contradicts "
                f"threshold_scale = {self.threshold_scale!r}; keep threshold_scale only"
            )
            raise ConfigError(msg)


class EvolutionSection(_Section):
    """Population-based training by the coordinator: off unless one of the two is set.

    ``every_steps``: each agent is ranked each time it has lived that many more steps (the
    same on any machine). ``interval``: the whole society every that many seconds of wall
    clock (what an agent has done by then depends on the machine's speed).
    """

    interval: float = 0.0
    every_steps: int = 0
    quantile: float = 0.25

    def check(self, origin: str) -> None:
        if self.interval < 0 or self.every_steps < 0:
            msg = f"scenario {origin}: evolution.interval and evolution.every_steps must be >= 0"
            raise ConfigError(msg)
        if self.interval > 0 and self.every_steps > 0:
            msg = f"scenario {origin}: evolution: set interval or every_steps, not both"
            raise ConfigError(msg)


class Scenario(_Section):
    name: str
    world: WorldSection
    description: str = ""
    #: An optional extra this scenario needs (``pip install .[EXTRA]``).
    requires: str = ""
    society: SocietySection = msgspec.field(default_factory=SocietySection)
    learner: LearnerSection = msgspec.field(default_factory=LearnerSection)
    evaluation: EvaluationSection = msgspec.field(default_factory=EvaluationSection)
    drift: DriftSection | None = None
    evolution: EvolutionSection = msgspec.field(default_factory=EvolutionSection)

    def check(self, origin: str) -> Scenario:
        """Range checks msgspec's types cannot express; raises :class:`ConfigError`."""
        positive = {
            "society.agents": self.society.agents,
            "learner.snapshot_every": self.learner.snapshot_every,
            "learner.experience_batch": self.learner.experience_batch,
            "learner.checkpoint_every": self.learner.checkpoint_every,
            "evaluation.episodes": self.evaluation.episodes,
            "evaluation.threshold_window": self.evaluation.threshold_window,
        }
        for name, value in positive.items():
            if value < 1:
                msg = f"scenario {origin}: {name} must be >= 1, got {value}"
                raise ConfigError(msg)
        self.learner.check(origin)
        self.evolution.check(origin)
        self.evaluation.check(origin)
        if self.society.steps < 0:
            msg = f"scenario {origin}: society.steps must be >= 0, got {self.society.steps}"
            raise ConfigError(msg)
        if self.drift is not None:
            if not self.drift.phases:
                msg = f"scenario {origin}: drift.phases needs at least one [regime, steps]"
                raise ConfigError(msg)
            for name, steps in self.drift.phases:
                if steps < 1:
                    msg = f"scenario {origin}: drift phase {name!r} needs steps >= 1"
                    raise ConfigError(msg)
        return self


def _builtin_dir() -> Path:
    return Path(str(resources.files("agents.scenarios")))


def builtin_scenarios() -> dict[str, Path]:
    """Built-in scenario names and their files."""
    return {path.stem: path for path in sorted(_builtin_dir().glob("*.toml"))}


def load_scenario(name_or_path: str) -> Scenario:
    """Load a built-in scenario by name, or a scenario file by path."""
    builtins = builtin_scenarios()
    path = builtins.get(name_or_path) or Path(name_or_path)
    if not path.is_file():
        known = ", ".join(builtins)
        msg = f"unknown scenario {name_or_path!r}: not a built-in ({known}) nor a file"
        raise ConfigError(msg)
    try:
        scenario = msgspec.toml.decode(path.read_bytes(), type=Scenario)
    except msgspec.ValidationError as exc:
        msg = f"scenario {path}: {exc}"
        raise ConfigError(msg) from None
    except msgspec.DecodeError as exc:
        msg = f"scenario {path}: not valid TOML: {exc}"
        raise ConfigError(msg) from None
    return scenario.check(str(path))
