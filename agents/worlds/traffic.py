"""``society/TrafficSignal-v0``: one signalised four-way intersection, a queue model.

Movements. Four approaches (N, S, E, W); with ``left_turns=True`` (default) each has a
through(+right) movement on ``through_lanes`` lanes and a protected left-turn movement on one
lane: 8 queues, served by 4 phases (0: N/S through, 1: N/S left, 2: E/W through, 3: E/W left).
With ``left_turns=False`` each approach is one queue: 4 queues, 2 phases (N/S, E/W).

Arrivals. Vehicles arrive by a Poisson process whose rate follows the time of day: a low night
level, a daytime plateau, a *morning rush inbound* on the north approach (around 08:00), an
*evening rush outbound* on the south approach (around 17:30), and optionally an *event* surge on
the east/west approaches (a stadium emptying at 21:00). ``left_share`` of each approach's
vehicles turn left. Arrival counts for the whole episode are drawn at ``reset`` from the seeded
generator.

Departures. A green movement discharges at saturation flow (``sat_flow_through`` vehicles/s per
lane, ``sat_flow_left`` for the left lane); fractional capacity carries over between steps while
the queue lasts. Switching to another phase costs ``lost_time_s`` of yellow + all-red during which
nothing moves: this is the switching cost a controller must weigh against serving a longer
queue. Vehicles that arrive on green at an empty queue pass without waiting.

Metrics. Waiting time is vehicle-seconds spent queued (every queued vehicle waits the whole step);
``info["total_waiting_time"]`` and ``info["throughput"]`` are episode totals.

Episodes last ``episode_s`` seconds (1 h, 720 steps of 5 s by default) and start at
``start_hour``, or at a random quarter-hour of the day when ``start_hour < 0`` (default), so a
learner sees rush hours, quiet nights and everything in between.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, SupportsFloat

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from agents.exceptions import ConfigError
from agents.worlds.base import HOURS_PER_DAY, ParamValue, World, WorldParams, check_ranges
from agents.worlds.drift import Regime

__all__ = [
    "APPROACHES",
    "DEVICE_RANGES",
    "TRAFFIC_REGIMES",
    "TrafficParams",
    "TrafficSignal",
    "arrival_rates_per_h",
    "device_context",
    "movement_names",
    "phase_movements",
]

APPROACHES = ("N", "S", "E", "W")
OBS_BOUND = 10.0
TIME_IN_PHASE_SCALE_S = 60.0
"""Time in phase is observed as seconds / 60, capped at ``OBS_BOUND``."""


def movement_names(left_turns: bool) -> tuple[str, ...]:  # noqa: FBT001 - mirrors the param
    """Queue order of the observation: ``N_T, N_L, S_T, S_L, ...`` or ``N, S, E, W``."""
    if left_turns:
        return tuple(f"{a}_{m}" for a in APPROACHES for m in ("T", "L"))
    return APPROACHES


def phase_movements(left_turns: bool) -> tuple[tuple[int, ...], ...]:  # noqa: FBT001
    """Queue indices that each phase serves."""
    if left_turns:
        return ((0, 2), (1, 3), (4, 6), (5, 7))
    return ((0, 1), (2, 3))


@dataclass(frozen=True)
class TrafficParams(WorldParams):
    """Every parameter of the traffic world, with units. Defaults: an arterial N/S road."""

    # Geometry and signal: device parameters.
    through_lanes: int = 2
    """Lanes of each through(+right) movement."""
    sat_flow_through: float = 0.5
    """Saturation flow per through lane, vehicles/s (1800 veh/h)."""
    sat_flow_left: float = 0.45
    """Saturation flow of a protected left-turn lane, vehicles/s."""
    lost_time_s: float = 5.0
    """Yellow + all-red time lost at every phase change, s."""
    min_green_s: float = 10.0
    """Safety minimum green enforced by the signal hardware, s: a change requested earlier is
    ignored (pedestrians must be able to start crossing). Controllers may hold phases longer."""
    # Demand, vehicles/h per approach at the daytime plateau: device and regime parameters.
    demand_n: float = 800.0
    demand_s: float = 800.0
    demand_e: float = 450.0
    demand_w: float = 450.0
    left_share: float = 0.2
    """Fraction of an approach's vehicles that turn left (ignored without left turns)."""
    demand_scale: float = 1.0
    """Multiplier on all demand (growth, holidays)."""
    ns_scale: float = 1.0
    """Multiplier on the N and S approaches' demand (detours, closures)."""
    ew_scale: float = 1.0
    """Multiplier on the E and W approaches' demand."""
    night_level: float = 0.12
    """Demand at night relative to the daytime plateau."""
    morning_peak_h: float = 8.0
    morning_width_h: float = 1.0
    morning_mult: float = 1.0
    """Extra demand on the north approach at the morning peak, relative to its plateau."""
    evening_peak_h: float = 17.5
    evening_width_h: float = 1.2
    evening_mult: float = 1.0
    """Extra demand on the south approach at the evening peak, relative to its plateau."""
    event_peak_h: float = 21.0
    event_width_h: float = 0.75
    event_mult: float = 0.0
    """Extra demand on the east and west approaches around ``event_peak_h`` (0: no event)."""
    # A fault of the signal cabinet: a regime parameter.
    crossed_signals: bool = False
    """The N/S and E/W signal groups are wired to each other's phases (a maintenance slip):
    the controller's phase ``k`` lights the movements of phase ``(k + n_phases / 2) mod
    n_phases``. The observation still shows the phase the controller asked for and the queue
    that phase would serve, so nothing in one observation reveals the fault."""
    # Observation and reward scales.
    queue_scale: float = 20.0
    """Queues are observed as vehicles / queue_scale (capped at 10)."""
    reward_scale: float = 0.00625
    """Reward = -(vehicles queued after the step) * reward_scale; the default, 1 / (8 * 20),
    makes the reward minus the mean queue per movement in units of ``queue_scale``."""
    # Structure: fixed for the world's life.
    observe_device: bool = False
    """Append the intersection's own device parameters (:data:`DEVICE_RANGES`, each scaled so
    that the range devices are drawn from maps to [-1, 1]) to the observation: a learner that
    takes in other intersections' transitions can then tell them from its own (a contextual
    MDP: Hallak, Di Castro & Mannor 2015). Only device parameters, never a regime's: the
    observation still does not reveal a drift."""
    left_turns: bool = True
    step_s: float = 5.0
    episode_s: float = 3600.0
    start_hour: float = -1.0
    """Hour of day at which episodes start; negative: a random quarter-hour each episode."""

    def validate(self) -> None:
        what = "TrafficSignal"
        check_ranges(
            self,
            what,
            positive=(
                "through_lanes",
                "sat_flow_through",
                "sat_flow_left",
                "step_s",
                "queue_scale",
                "reward_scale",
                "morning_width_h",
                "evening_width_h",
                "event_width_h",
            ),
            non_negative=(
                "demand_n",
                "demand_s",
                "demand_e",
                "demand_w",
                "demand_scale",
                "ns_scale",
                "ew_scale",
                "lost_time_s",
                "min_green_s",
                "night_level",
                "morning_mult",
                "evening_mult",
                "event_mult",
            ),
            fractions=("left_share",),
        )
        if self.start_hour >= HOURS_PER_DAY:
            raise ConfigError(f"{what}: start_hour={self.start_hour!r} must be < 24 (<0: random)")
        if self.episode_s < self.step_s:
            raise ConfigError(
                f"{what}: episode_s={self.episode_s!r} must be at least one step ({self.step_s} s)"
            )


def arrival_rates_per_h(p: TrafficParams, hours: NDArray[np.float64]) -> NDArray[np.float64]:
    """Arrival rates (vehicles/h) of every queue at the given hours of day; shape (len, n_queues).

    The daytime plateau rises from ``night_level`` between 05:00 and 07:00 and falls back between
    20:00 and 23:00; rush and event bumps are Gaussian in time.
    """
    h = np.mod(hours, 24.0)
    rise = np.clip((h - 5.0) / 2.0, 0.0, 1.0)
    fall = np.clip((23.0 - h) / 3.0, 0.0, 1.0)
    base = p.night_level + (1.0 - p.night_level) * np.minimum(rise, fall)

    def bump(peak: float, width: float) -> NDArray[np.float64]:
        d = np.mod(h - peak + 12.0, 24.0) - 12.0
        return np.asarray(np.exp(-0.5 * (d / width) ** 2), dtype=np.float64)

    morning = p.morning_mult * bump(p.morning_peak_h, p.morning_width_h)
    evening = p.evening_mult * bump(p.evening_peak_h, p.evening_width_h)
    event = p.event_mult * bump(p.event_peak_h, p.event_width_h)
    ns = p.demand_scale * p.ns_scale
    ew = p.demand_scale * p.ew_scale
    approach = {
        "N": ns * p.demand_n * (base + morning),
        "S": ns * p.demand_s * (base + evening),
        "E": ew * p.demand_e * (base + event),
        "W": ew * p.demand_w * (base + event),
    }
    cols: list[NDArray[np.float64]] = []
    for a in APPROACHES:
        if p.left_turns:
            cols += [approach[a] * (1.0 - p.left_share), approach[a] * p.left_share]
        else:
            cols.append(approach[a])
    return np.stack(cols, axis=1)


def _regimes(*regimes: Regime) -> Mapping[str, Regime]:
    return types.MappingProxyType({r.name: r for r in regimes})


TRAFFIC_REGIMES: Mapping[str, Regime] = _regimes(
    Regime(
        "weekday",
        {"demand_scale": 1.0, "morning_mult": 1.0, "evening_mult": 1.0, "event_mult": 0.0},
        "morning rush inbound (N), evening rush outbound (S)",
    ),
    Regime(
        "weekend",
        {"demand_scale": 0.75, "morning_mult": 0.0, "evening_mult": 0.2, "event_mult": 0.0},
        "lighter, no commuter rush",
    ),
    Regime(
        "event",
        {"demand_scale": 1.0, "morning_mult": 1.0, "evening_mult": 1.0, "event_mult": 1.5},
        "weekday plus a stadium emptying onto E/W around 21:00",
    ),
    Regime(
        "growth",
        {"demand_scale": 1.2, "morning_mult": 1.0, "evening_mult": 1.0, "event_mult": 0.0},
        "weekday with 20 % more traffic",
    ),
    Regime(
        "reversed",
        {
            "demand_scale": 1.0,
            "morning_mult": 0.0,
            "evening_mult": 0.0,
            "event_mult": 0.0,
            "ns_scale": 0.55,
            "ew_scale": 1.8,
        },
        "a detour makes E/W the main road",
    ),
    Regime(
        "crossed",
        {
            "demand_scale": 1.0,
            "morning_mult": 1.0,
            "evening_mult": 1.0,
            "event_mult": 0.0,
            "crossed_signals": True,
        },
        "weekday demand, N/S and E/W signal groups wired to each other's phases",
    ),
)
"""Demand patterns of the traffic world."""


DEVICE_RANGES: Mapping[str, tuple[float, float, int]] = types.MappingProxyType(
    {
        "demand_n": (600.0, 1000.0, 1),
        "demand_s": (600.0, 1000.0, 1),
        "demand_e": (315.0, 585.0, 1),
        "demand_w": (315.0, 585.0, 1),
        "left_share": (0.1, 0.3, 3),
        "sat_flow_through": (0.45, 0.55, 3),
    }
)
"""What sets one intersection apart from another: each device parameter's range (low, high)
when devices are drawn (:meth:`TrafficSignal.sample_params`), and the digits it is rounded to."""


def device_context(params: TrafficParams) -> list[float]:
    """The device parameters as ``observe_device`` shows them: the drawn range maps to [-1, 1]."""
    context = []
    for name, (low, high, _) in DEVICE_RANGES.items():
        scaled = 2.0 * (float(getattr(params, name)) - low) / (high - low) - 1.0
        context.append(min(max(scaled, -OBS_BOUND), OBS_BOUND))
    return context


class TrafficSignal(World[TrafficParams, np.int64]):
    """The controller of one signalised intersection (``society/TrafficSignal-v0``).

    Action: ``Discrete(n_phases)``, the phase to show next. Keeping the current phase extends
    it; choosing another starts a yellow/all-red transition of ``lost_time_s``, unless the
    current phase has not yet shown ``min_green_s`` of green (then the request is ignored, as a
    real signal controller would).

    Observation (float32): queues / ``queue_scale`` (capped at 10), current phase one-hot,
    time in phase / 60 s (capped at 10), the total queue the current phase serves /
    ``queue_scale`` (capped at 10; a learner needs it to weigh "keep serving" against "switch",
    and an MLP finds that product of one-hot and queues hard to learn), time of day (sin, cos),
    and with ``observe_device`` the intersection's own device parameters (:func:`device_context`).

    Reward: ``-(vehicles queued after the step) * reward_scale``, i.e. minus the waiting time of
    the step in units of ``step_s / reward_scale`` vehicle-seconds.

    ``info``: ``total_waiting_time`` (vehicle-seconds, episode total), ``throughput`` (vehicles
    served, episode total), ``waiting_time`` (this step), ``queues`` (int array), ``phase``,
    ``time_in_phase_s``, ``hour``, ``arrivals`` (this step).
    """

    regimes: ClassVar[Mapping[str, Regime]] = TRAFFIC_REGIMES
    default_regime: ClassVar[str | None] = "weekday"
    structural_params: ClassVar[frozenset[str]] = frozenset(
        {"left_turns", "step_s", "episode_s", "queue_scale", "observe_device"}
    )
    metrics: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {"total_waiting_time": "total_waiting_time", "throughput": "throughput"}
    )

    def __init__(
        self,
        *,
        regime: str | None = None,
        render_mode: str | None = None,
        **params: ParamValue,
    ) -> None:
        super().__init__(TrafficParams(), params, regime=regime, render_mode=render_mode)
        p = self.base_params
        self.movements = movement_names(p.left_turns)
        self.phases = phase_movements(p.left_turns)
        self.n_queues = len(self.movements)
        self.n_phases = len(self.phases)
        self.episode_steps = max(1, round(p.episode_s / p.step_s))
        self._device = device_context(p) if p.observe_device else []
        self.obs_dim = self.n_queues + self.n_phases + 4 + len(self._device)
        context_bounds = [OBS_BOUND] * len(self._device)
        self.observation_space = spaces.Box(
            np.array(
                [0.0] * (self.n_queues + self.n_phases + 2)
                + [-1.0, -1.0]
                + [-b for b in context_bounds],
                np.float32,
            ),
            np.array(
                [OBS_BOUND] * self.n_queues
                + [1.0] * self.n_phases
                + [OBS_BOUND, OBS_BOUND, 1.0, 1.0]
                + context_bounds
            ).astype(np.float32),
            dtype=np.float32,
        )
        self.action_space = spaces.Discrete(self.n_phases)
        self._queues = [0] * self.n_queues
        self._credit = [0.0] * self.n_queues
        self._arrivals: list[list[int]] = []
        self._tod: list[tuple[float, float]] = []
        self._phase = 0
        self._lost_left = 0.0
        self._in_phase_s = 0.0
        self._t = 0
        self._start_h = 0.0
        self._waiting = 0.0
        self._served = 0

    # --- parameters and devices ----------------------------------------------------------

    def _params_changed(self) -> None:
        p = self.params
        sat = []
        for name in movement_names(p.left_turns):
            left = name.endswith("_L")
            sat.append(p.sat_flow_left if left else p.sat_flow_through * p.through_lanes)
        self.sat_flow = tuple(sat)
        """Saturation flow of each queue, vehicles/s (read by the max-pressure baseline)."""
        self._cap_step = [s * p.step_s for s in sat]
        phases = phase_movements(p.left_turns)
        shift = len(phases) // 2 if p.crossed_signals else 0
        self.lit_phases = tuple(phases[(k + shift) % len(phases)] for k in range(len(phases)))
        """The movements each phase action actually lights (``phases`` unless the signal
        groups are crossed; read by the reference controllers, never observed)."""
        self._min_green = p.min_green_s - 1e-9

    @classmethod
    def sample_params(cls, rng: np.random.Generator) -> dict[str, ParamValue]:
        """One intersection: its demand per approach, left-turn share and lane discharge rate."""
        return {
            name: round(float(rng.uniform(low, high)), digits)
            for name, (low, high, digits) in DEVICE_RANGES.items()
        }

    # --- gymnasium API -------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Empty intersection at the start hour (``options``: ``start_hour``, ``phase``)."""
        super().reset(seed=seed)
        p = self.params
        rng = self.np_random
        opts = options or {}
        start = float(opts.get("start_hour", p.start_hour))
        if start >= HOURS_PER_DAY:
            raise ConfigError(f"TrafficSignal.reset: start_hour={start!r} must be < 24")
        if start < 0.0:
            start = float(rng.integers(0, 96)) / 4.0
        phase = int(opts.get("phase", rng.integers(0, self.n_phases)))
        if not 0 <= phase < self.n_phases:
            raise ConfigError(f"TrafficSignal.reset: phase={phase!r} is not a phase")
        n = self.episode_steps
        hours = start + (np.arange(n + 1, dtype=np.float64) + 0.5) * p.step_s / 3600.0
        lam = arrival_rates_per_h(p, hours[:n]) * (p.step_s / 3600.0)
        self._arrivals = rng.poisson(lam).tolist()
        ends = start + np.arange(n + 1, dtype=np.float64) * p.step_s / 3600.0
        angle = 2.0 * np.pi * np.mod(ends, 24.0) / 24.0
        self._tod = list(zip(np.sin(angle).tolist(), np.cos(angle).tolist(), strict=True))
        self._start_h = start
        self._queues = [0] * self.n_queues
        self._credit = [0.0] * self.n_queues
        self._phase = phase
        self._lost_left = 0.0
        self._in_phase_s = p.min_green_s  # the first phase has run for its minimum green
        self._t = 0
        self._waiting = 0.0
        self._served = 0
        return self._obs(), self._info(0.0, 0)

    def _obs(self) -> NDArray[np.float32]:
        inv = 1.0 / self.params.queue_scale
        values = [min(q * inv, OBS_BOUND) for q in self._queues]
        onehot = [0.0] * self.n_phases
        onehot[self._phase] = 1.0
        values += onehot
        values.append(min(self._in_phase_s / TIME_IN_PHASE_SCALE_S, OBS_BOUND))
        served = 0
        for m in self.phases[self._phase]:
            served += self._queues[m]
        values.append(min(served * inv, OBS_BOUND))
        values += self._tod[self._t]
        values += self._device
        return np.array(values, dtype=np.float32)

    def _info(self, waiting: float, arrivals: int) -> dict[str, Any]:
        return {
            "total_waiting_time": self._waiting,
            "throughput": self._served,
            "waiting_time": waiting,
            "queues": np.array(self._queues, dtype=np.int64),
            "phase": self._phase,
            "time_in_phase_s": self._in_phase_s,
            "hour": (self._start_h + self._t * self.params.step_s / 3600.0) % 24.0,
            "arrivals": arrivals,
        }

    def _request_change(self, a: int) -> int:
        """Start the change to phase ``a`` unless minimum green forbids; the phase to show."""
        if self._lost_left <= 0.0:
            if self._in_phase_s < self._min_green:
                return self._phase  # the hardware holds the minimum green
            self._lost_left = self.params.lost_time_s
        for m in self.lit_phases[self._phase]:
            self._credit[m] = 0.0
        self._phase = a
        self._in_phase_s = 0.0
        return a

    def step(
        self, action: np.int64
    ) -> tuple[NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        """Show phase ``action`` for one step (after a transition if it is a change)."""
        a = int(action)
        if not 0 <= a < self.n_phases:
            raise ValueError(f"TrafficSignal: action {a} is not a phase in [0, {self.n_phases})")
        step_s = self.params.step_s
        queues = self._queues
        credit = self._credit
        if a != self._phase:
            a = self._request_change(a)
        arr = self._arrivals[self._t]
        n_arr = 0
        for m in range(self.n_queues):
            k = arr[m]
            if k:
                queues[m] += k
                n_arr += k
        green_s = step_s
        if self._lost_left > 0.0:
            used = min(self._lost_left, step_s)
            self._lost_left -= used
            green_s -= used
        served = 0
        if green_s > 0.0:
            frac = green_s / step_s
            for m in self.lit_phases[a]:
                q = queues[m]
                cap = self._cap_step[m] * frac + credit[m]
                d = min(q, math.floor(cap))
                queues[m] = q - d
                served += d
                credit[m] = cap - d if q > d else 0.0
            self._in_phase_s += green_s
        queued = sum(queues)
        waiting = queued * step_s
        self._waiting += waiting
        self._served += served
        self._t += 1
        reward = -queued * self.params.reward_scale
        truncated = self._t >= self.episode_steps
        return self._obs(), reward, False, truncated, self._info(waiting, n_arr)

    def render(self) -> str | None:
        """A one-line text status (``render_mode="ansi"``)."""
        if self.render_mode != "ansi":
            return None
        hour = (self._start_h + self._t * self.params.step_s / 3600.0) % 24.0
        queues = " ".join(f"{n}:{q}" for n, q in zip(self.movements, self._queues, strict=True))
        return f"{int(hour):02d}:{int((hour % 1) * 60):02d} phase {self._phase} {queues}"
