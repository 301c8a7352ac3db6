"""Self-evolution of the society: population-based training within each niche.

A *niche* is the agents learning the same world with the same algorithm: their snapshots are
interchangeable. Every ``interval`` the coordinator ranks each niche by the agents' latest
evaluations; the bottom ``quantile`` *exploit* a top-``quantile`` agent (adopt its latest
snapshot) and *explore* (perturb the adopted hyperparameters: each perturbable value
multiplied by one of ``factors``, or, with ``resample_probability``, drawn afresh from its
range), as in Jaderberg et al., "Population Based Training of Neural Networks" (2017).

An agent that was just told to adopt is left alone until a snapshot it published after the
directive has been evaluated, so it is judged on what it did with what it got. Control twins
and agents that do not share ``evolution`` take no part.

Devices of one world differ, so an agent copies only a top agent whose device is alike
(:mod:`agents.likeness`, from the parameters their snapshots announce): a policy from another
house or intersection can be far worse on its own (docs/benchmarks.md: a house whose agent
took another house's snapshot on a drift went from 20 % better than its thermostat to 165 %
worse in evaluation; the same rule now keeps such snapshots out of drift adaptation, see
:mod:`agents.learner.peers`). And where devices differ, raw returns do not rank agents (a
larger house costs more whatever its policy): the coordinator ranks them by how much better
than their own device's baseline controller they do (``Member.gain``).

Nor does an agent copy a peer it federates with (either averages the other's weights into its
own, ``Member.federates_with``): the peer's learning is in its weights already, and the
peer's latest snapshot, older than that, would only set it back.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agents.bus.schemas import HyperValue
from agents.likeness import devices_alike

__all__ = ["RESAMPLE_RANGES", "Member", "Order", "plan_generation"]

#: Hyperparameters evolution changes, and the (log-uniform) range a resample draws from.
RESAMPLE_RANGES: dict[str, tuple[float, float]] = {
    "learning_rate": (1e-5, 3e-3),
    "ent_coef": (1e-4, 0.05),
}


@dataclass(frozen=True, slots=True)
class Member:
    """What evolution needs to know of an agent."""

    agent: str
    niche: str
    score: float
    version: int
    hyperparams: dict[str, HyperValue] = field(default_factory=dict)
    #: The device the agent's snapshots announce: only alike devices learn from each other.
    device: Mapping[str, HyperValue] = field(default_factory=dict)
    #: How much better than its device's baseline controller it does, as a share
    #: (``over_baseline``, agents.coordinator.sharing); NaN where the world has no baseline.
    #: A niche whose members all have one is ranked by it, otherwise by ``score``.
    gain: float = math.nan
    #: Peers whose weights it averages into its own (federated learning): their learning is in
    #: its weights already, and their snapshot, older than that, would set it back.
    federates_with: frozenset[str] = frozenset()

    def federates(self, other: Member) -> bool:
        """Whether either of the two averages the other's weights into its own."""
        return other.agent in self.federates_with or self.agent in other.federates_with


@dataclass(frozen=True, slots=True)
class Order:
    """One directive: ``agent`` adopts ``source``'s snapshot ``version`` with ``hyperparams``."""

    agent: str
    source: str
    version: int
    hyperparams: dict[str, HyperValue]


def plan_generation(
    members: Sequence[Member],
    *,
    quantile: float = 0.25,
    factors: tuple[float, ...] = (0.8, 1.25),
    resample_probability: float = 0.25,
    rng: random.Random,
) -> list[Order]:
    """The exploit/explore orders for one generation, niche by niche."""
    orders: list[Order] = []
    niches: dict[str, list[Member]] = {}
    for member in members:
        niches.setdefault(member.niche, []).append(member)
    for niche in sorted(niches):
        group = niches[niche]
        by_gain = all(math.isfinite(m.gain) for m in group)

        def rank(member: Member, *, by_gain: bool = by_gain) -> float:
            return member.gain if by_gain else member.score

        ranked = sorted(group, key=rank, reverse=True)
        if len(ranked) < 2:  # noqa: PLR2004 - evolution needs someone to learn from
            continue
        cut = max(1, math.floor(quantile * len(ranked)))
        top, bottom = ranked[:cut], ranked[-cut:]
        for member in bottom:
            if member in top:
                continue
            alike = [
                m for m in top
                if devices_alike(member.device, m.device) and not member.federates(m)
            ]  # fmt: skip
            if not alike:
                continue  # nobody alike to learn from that it does not learn from already
            source = rng.choice(alike)
            if rank(source) <= rank(member):
                continue  # a tie: nothing to learn
            orders.append(
                Order(
                    agent=member.agent,
                    source=source.agent,
                    version=source.version,
                    hyperparams=explore(source.hyperparams, factors, resample_probability, rng),
                )
            )
    return orders


def explore(
    hyperparams: dict[str, HyperValue],
    factors: tuple[float, ...],
    resample_probability: float,
    rng: random.Random,
) -> dict[str, HyperValue]:
    """Perturbed copies of the perturbable hyperparameters the source has."""
    explored: dict[str, HyperValue] = {}
    for key, (low, high) in RESAMPLE_RANGES.items():
        value = hyperparams.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if rng.random() < resample_probability or value <= 0:
            explored[key] = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            explored[key] = min(high, max(low, float(value) * rng.choice(factors)))
    return explored
