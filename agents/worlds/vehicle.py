"""``society/CarFollowing-v0``: a car's adaptive cruise control behind a leader, on a drifting road.

The agent is the longitudinal controller of one car (the *follower*) driving behind another
(the *leader*) in one lane. Every step it commands an acceleration; it is judged on safety,
comfort and efficiency together (the *combined score*, below).

Follower dynamics, per step of ``step_s`` seconds. The commanded acceleration ``u`` (limited to
``[-brake_max_ms2, accel_max_ms2]``) reaches the wheels through the first-order lag of the
powertrain and brakes, the standard model of an ACC's lower-level controller (Rajamani,
*Vehicle Dynamics and Control*, 2nd ed. 2012, ch. 5): the actuators' acceleration follows
``act' = act + (u - act)(1 - exp(-dt/lag_s))``. The tyres cap it at the friction limit,
``|act| <= mu g`` with ``mu = road_friction * tyre_grip`` (traction also at
``accel_max_ms2``); speed never goes below zero (a car that stops stands, its acceleration is
then zero, and it keeps its brake pressure until the command releases it, through the same
lag). Position advances by the mean speed of the step (exactly, for a car that stops within
it).

The leader. Its whole trajectory is drawn at reset from the seeded generator and does not
depend on the follower: it drives *segments* of ``segment_min_s``..``segment_max_s`` seconds,
each with a target speed drawn in ``[lead_speed_low_ms, lead_speed_high_ms]`` or, with
probability ``stop_share``, a stop (a queue ahead: stop-and-go traffic). It closes on the target
at ``lead_gain_per_s`` with its driver's comfortable acceleration and deceleration as limits,
plus AR(1) acceleration noise (a human's unsteady foot); an aggressive driver also brakes hard
now and then (Poisson events, ``hard_brake_per_min``) at ``hard_brake_share`` of the friction
limit for ``hard_brake_min_s``..``hard_brake_max_s`` seconds. The leader's tyres are new (its
friction is the road's), so a follower on worn tyres (``tyre_grip < 1``) cannot brake as hard
as the car it follows.

Collisions. When the gap closes (bumper to bumper, ``gap <= 0``) a collision is counted and
priced (``collision_cost``), and the follower is put back ``restart_gap_m`` behind the leader at
the leader's speed, with no acceleration, as if a new car had taken its place: the episode goes
on to its full length, so episodes end by truncation only, like every world's, and one
unsafe policy cannot hide its later steps.

The combined score (a cost, lower is better) sums, per step:

- ``collision_cost`` per collision;
- ``headway_cost_per_s`` per second with a time headway ``gap / v`` below ``headway_min_s``
  (1 s: tailgating, half the two-second rule; Vogel 2003 on headway as a safety indicator);
- ``hard_brake_cost_per_s`` per second braking harder than ``hard_brake_ms2`` (3 m/s², about
  0.3 g; an ACC may brake automatically at up to 3.5 m/s² at speed, ISO 15622);
- ``jerk_cost`` times the squared jerk (m²/s⁶) times the step (comfort; the jerk of the
  achieved acceleration);
- ``energy_cost_per_kwh`` per kWh of traction energy (wheel power from the road-load equation,
  ``m a + m g c_r + rho c_d A v^2 / 2`` times speed, positive part, over the drivetrain's
  efficiency; no recuperation);
- ``time_gap_cost_per_s`` times the step times the *time gap*, the seconds the leader needed
  to cover the gap (``gap / max(v_lead, 2 m/s)``, capped at 30 s): how far behind the follower
  drives, i.e. how much road it takes (a lane carries ``3600 / time gap`` vehicles/h).

The reward is minus that cost times ``reward_scale``, so an episode's return is minus its score
times ``reward_scale``; ``info["episode_score"]`` is the score itself.

Why a learner can beat the Intelligent Driver Model and a constant-time-gap ACC: both have one
time gap and one braking strategy for every road, and neither knows the friction. A learner can
follow closer where the leader is calm and the road good, keep more room where the leader
brakes hard, brake earlier on ice, and smooth its response to a leader's unsteady foot.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from agents.exceptions import ConfigError
from agents.worlds.base import ParamValue, World, WorldParams, check_ranges
from agents.worlds.drift import Regime

__all__ = [
    "GRAVITY_MS2",
    "OBS_ACCEL",
    "OBS_COMMAND",
    "OBS_GAP",
    "OBS_HEADWAY",
    "OBS_INV_TTC",
    "OBS_LEAD_ACCEL",
    "OBS_LEAD_UNSTEADY",
    "OBS_REL_SPEED",
    "OBS_SET_SPEED",
    "OBS_SPEED",
    "OBS_TIME_GAP",
    "VEHICLE_REGIMES",
    "CarFollowing",
    "CarFollowingParams",
    "ConstantTimeGapACC",
    "IntelligentDriver",
    "VehicleAction",
]

VehicleAction = NDArray[np.floating[Any]] | NDArray[np.integer[Any]]
"""A one-element array in [-1, 1]: the commanded acceleration (see :class:`CarFollowing`)."""

GRAVITY_MS2 = 9.81
"""Gravity, m/s²."""

OBS_GAP = 0
OBS_SPEED = 1
OBS_REL_SPEED = 2
OBS_ACCEL = 3
OBS_LEAD_ACCEL = 4
OBS_HEADWAY = 5
OBS_INV_TTC = 6
OBS_SET_SPEED = 7
OBS_COMMAND = 8
OBS_TIME_GAP = 9
OBS_LEAD_UNSTEADY = 10
_N_OBS = 11

GAP_SCALE_M = 50.0
SPEED_SCALE_MS = 30.0
REL_SPEED_SCALE_MS = 10.0
ACCEL_SCALE_MS2 = 3.0
HEADWAY_SCALE_S = 5.0
HEADWAY_CAP_S = 10.0
INV_TTC_CAP = 2.0
OBS_BOUND = 10.0

TIME_GAP_FLOOR_MS = 2.0
"""The time gap divides the gap by the leader's speed, but by at least this (stop-and-go)."""
TIME_GAP_CAP_S = 30.0
UNSTEADY_WINDOW_S = 10.0
"""Time constant of the running mean of the leader's squared acceleration, s."""
LEAD_NOISE_CORRELATION_S = 2.0
"""Correlation time of the leader's acceleration noise, s."""
LEAD_NOISE_MIN_SPEED_MS = 0.5
"""Below this speed the leader's foot is steady (a stopped car does not jitter)."""
HARD_BRAKE_MIN_SPEED_MS = 5.0
"""Hard brakes happen only above this speed."""
START_GAP_M = 2.0
MAX_START_SPEED_MS = 60.0
MAX_START_GAP_M = 1000.0
MAX_FRICTION = 1.5


@dataclass(frozen=True)
class CarFollowingParams(WorldParams):
    """Every parameter of the car-following world, with units. Defaults: a dry motorway."""

    # The car: device parameters.
    mass_kg: float = 1500.0
    drag_area_m2: float = 0.65
    """Drag coefficient times frontal area, m²."""
    rolling_resistance: float = 0.010
    drivetrain_efficiency: float = 0.85
    """Share of the energy drawn that reaches the wheels."""
    accel_max_ms2: float = 2.5
    """The most the powertrain delivers, m/s²; the action's upper end."""
    brake_max_ms2: float = 8.0
    """The hardest braking the controller may command, m/s²; the action's lower end (the
    tyres cap what is achieved)."""
    lag_s: float = 0.5
    """Time constant of the first-order lag from command to achieved acceleration, s."""
    tyre_grip: float = 1.0
    """The follower's tyres: its friction is ``road_friction * tyre_grip`` (worn < 1)."""
    set_speed_ms: float = 30.0
    """The driver's set (desired) speed, m/s: the cruise speed with nobody ahead."""
    # The road: a regime parameter.
    road_friction: float = 0.8
    """Peak tyre-road friction coefficient: about 0.8 dry asphalt, 0.5 wet, 0.1-0.2 ice."""
    # Traffic: regime parameters.
    lead_speed_low_ms: float = 20.0
    lead_speed_high_ms: float = 27.0
    stop_share: float = 0.0
    """Share of the leader's segments that are a stop (a queue ahead)."""
    segment_min_s: float = 8.0
    segment_max_s: float = 25.0
    # The lead driver: regime parameters.
    lead_accel_ms2: float = 1.0
    lead_decel_ms2: float = 1.5
    lead_gain_per_s: float = 0.4
    lead_noise_ms2: float = 0.15
    """Standard deviation of the leader's AR(1) acceleration noise (2 s correlation), m/s²."""
    hard_brake_per_min: float = 0.0
    hard_brake_share: float = 0.8
    """A hard brake decelerates at this share of the friction limit."""
    hard_brake_min_s: float = 1.0
    hard_brake_max_s: float = 2.5
    # The combined score.
    collision_cost: float = 100.0
    headway_min_s: float = 1.0
    headway_cost_per_s: float = 2.0
    hard_brake_ms2: float = 3.0
    hard_brake_cost_per_s: float = 2.0
    jerk_cost: float = 0.1
    energy_cost_per_kwh: float = 10.0
    time_gap_cost_per_s: float = 0.1
    restart_gap_m: float = 2.0
    """After a collision the follower goes on this far behind the leader, m."""
    reward_scale: float = 0.1
    # Structure: fixed for the world's life.
    step_s: float = 0.2
    episode_s: float = 120.0

    def validate(self) -> None:
        what = "CarFollowing"
        check_ranges(
            self,
            what,
            positive=(
                "mass_kg",
                "accel_max_ms2",
                "brake_max_ms2",
                "lag_s",
                "tyre_grip",
                "set_speed_ms",
                "road_friction",
                "segment_min_s",
                "lead_accel_ms2",
                "lead_decel_ms2",
                "lead_gain_per_s",
                "hard_brake_min_s",
                "headway_min_s",
                "hard_brake_ms2",
                "reward_scale",
                "step_s",
                "episode_s",
                "restart_gap_m",
            ),
            non_negative=(
                "drag_area_m2",
                "rolling_resistance",
                "lead_speed_low_ms",
                "lead_noise_ms2",
                "hard_brake_per_min",
                "collision_cost",
                "headway_cost_per_s",
                "hard_brake_cost_per_s",
                "jerk_cost",
                "energy_cost_per_kwh",
                "time_gap_cost_per_s",
            ),
            fractions=("drivetrain_efficiency", "stop_share", "hard_brake_share"),
        )
        if self.drivetrain_efficiency == 0.0:
            raise ConfigError(f"{what}: drivetrain_efficiency=0.0 must be > 0")
        if self.road_friction > MAX_FRICTION or self.tyre_grip > MAX_FRICTION:
            raise ConfigError(
                f"{what}: road_friction={self.road_friction!r} and tyre_grip="
                f"{self.tyre_grip!r} must be at most 1.5 (no road grips like that)"
            )
        pairs = (
            ("lead_speed_low_ms", "lead_speed_high_ms"),
            ("segment_min_s", "segment_max_s"),
            ("hard_brake_min_s", "hard_brake_max_s"),
        )
        for low, high in pairs:
            if getattr(self, high) < getattr(self, low):
                raise ConfigError(
                    f"{what}: {high}={getattr(self, high)!r} must be >= "
                    f"{low}={getattr(self, low)!r}"
                )
        steps = self.episode_s / self.step_s
        if steps < 1.0 or not math.isclose(steps, round(steps), abs_tol=1e-6):
            raise ConfigError(
                f"{what}: episode_s={self.episode_s!r} must be a whole number of steps "
                f"of step_s={self.step_s!r}"
            )


_CALM = {
    "lead_accel_ms2": 1.0,
    "lead_decel_ms2": 1.5,
    "lead_noise_ms2": 0.15,
    "hard_brake_per_min": 0.0,
}
_MOTORWAY = {
    "lead_speed_low_ms": 20.0,
    "lead_speed_high_ms": 27.0,
    "stop_share": 0.0,
    "segment_min_s": 8.0,
    "segment_max_s": 25.0,
}

VEHICLE_REGIMES: Mapping[str, Regime] = types.MappingProxyType(
    {
        r.name: r
        for r in (
            Regime(
                "dry",
                {"road_friction": 0.8, **_MOTORWAY, **_CALM},
                "dry motorway, light traffic, a calm leader",
            ),
            Regime(
                "wet",
                {
                    "road_friction": 0.5,
                    **_MOTORWAY,
                    "lead_speed_low_ms": 17.0,
                    "lead_speed_high_ms": 24.0,
                    **_CALM,
                },
                "rain: less grip, everybody a little slower",
            ),
            Regime(
                "icy",
                {
                    "road_friction": 0.15,
                    **_MOTORWAY,
                    "lead_speed_low_ms": 8.0,
                    "lead_speed_high_ms": 15.0,
                    "stop_share": 0.15,
                    **_CALM,
                    "lead_accel_ms2": 0.6,
                    "lead_decel_ms2": 1.0,
                },
                "black ice: a fifth of the grip, slow traffic that sometimes stops",
            ),
            Regime(
                "dense",
                {
                    "road_friction": 0.8,
                    "lead_speed_low_ms": 2.0,
                    "lead_speed_high_ms": 12.0,
                    "stop_share": 0.4,
                    "segment_min_s": 6.0,
                    "segment_max_s": 20.0,
                    **_CALM,
                },
                "rush hour: stop-and-go waves",
            ),
            Regime(
                "aggressive",
                {
                    "road_friction": 0.8,
                    **_MOTORWAY,
                    "lead_speed_low_ms": 18.0,
                    "lead_speed_high_ms": 28.0,
                    "lead_accel_ms2": 2.5,
                    "lead_decel_ms2": 3.0,
                    "lead_noise_ms2": 0.4,
                    "hard_brake_per_min": 1.0,
                },
                "a leader who accelerates hard and brakes hard without warning",
            ),
        )
    }
)
"""Road, traffic and lead-driver regimes of the car-following world."""


class CarFollowing(World[CarFollowingParams, VehicleAction]):
    """Adaptive cruise control of a car behind a leader (``society/CarFollowing-v0``).

    Args:
        regime: the regime to start in (see :data:`VEHICLE_REGIMES`); default ``dry``.
        render_mode: ``None`` or ``"ansi"``.
        **params: overrides of :class:`CarFollowingParams` (the car, the score's weights).

    Action: ``Box([-1], [1])``, the commanded acceleration ``x * brake_max_ms2``, capped at
    ``accel_max_ms2`` (0 holds the speed, -1 is full braking). One linear scale: with separate
    scales for braking and accelerating, symmetric exploration noise would brake on average.

    Observation (11 float32, what an ACC's radar and the car's own sensors give): gap / 50 m,
    speed / 30 m/s, relative speed ``v_lead - v`` / 10 m/s, the car's achieved acceleration / 3
    m/s², the leader's acceleration over the last step / 3 m/s², the time headway ``gap / v``
    (capped at 10 s) / 5 s, the closing rate over the gap ``(v - v_lead) / gap`` (the inverse
    time to collision, clipped to ±2 /s), the set speed / 30 m/s, the last command / 3 m/s²,
    the score's time gap / 5 s, and the leader's unsteadiness (root mean square of its
    acceleration over about 10 s) / 3 m/s². The road's friction and the leader's style are not
    observed.

    Reward: minus the step's share of the combined score (module docstring) times
    ``reward_scale``.

    ``info``: the step's ``gap_m``, ``speed_ms``, ``lead_speed_ms``, ``accel_ms2`` (achieved),
    ``jerk_ms3``, ``time_headway_s``, ``time_gap_s``, ``collision`` (bool), ``energy_kwh``,
    ``cost``, and the episode totals ``episode_score``, ``episode_collisions``,
    ``episode_short_headway_s``, ``episode_hard_braking_s``, ``episode_jerk_sq``
    (∫ jerk² dt, m²/s⁵), ``episode_energy_kwh``, ``episode_mean_time_gap_s`` and
    ``episode_distance_m``.
    """

    regimes: ClassVar[Mapping[str, Regime]] = VEHICLE_REGIMES
    default_regime: ClassVar[str | None] = "dry"
    structural_params: ClassVar[frozenset[str]] = frozenset({"step_s", "episode_s"})
    metrics: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {
            "score": "episode_score",
            "collisions": "episode_collisions",
            "short_headway_s": "episode_short_headway_s",
            "hard_braking_s": "episode_hard_braking_s",
            "jerk_sq": "episode_jerk_sq",
            "energy_kwh": "episode_energy_kwh",
            "time_gap_s": "episode_mean_time_gap_s",
            "distance_m": "episode_distance_m",
        }
    )

    def __init__(
        self,
        *,
        regime: str | None = None,
        render_mode: str | None = None,
        **params: ParamValue,
    ) -> None:
        super().__init__(CarFollowingParams(), params, regime=regime, render_mode=render_mode)
        p = self.base_params
        self.dt = p.step_s
        self.episode_steps = round(p.episode_s / p.step_s)
        self.observation_space = spaces.Box(
            -OBS_BOUND, OBS_BOUND, shape=(_N_OBS,), dtype=np.float32
        )
        self.action_space: spaces.Space[VehicleAction] = spaces.Box(
            -1.0, 1.0, shape=(1,), dtype=np.float32
        )
        self._lead_x: list[float] = []
        self._lead_v: list[float] = []
        self._t = 0
        self._x = self._v = self._a = self._act = self._u = 0.0
        self._lead_a = self._lead_ms = 0.0
        self._reset_totals()

    def _params_changed(self) -> None:
        p = self.params
        self._alpha = 1.0 - math.exp(-p.step_s / p.lag_s)
        self._unsteady_alpha = 1.0 - math.exp(-p.step_s / UNSTEADY_WINDOW_S)
        self._mu_g = p.road_friction * p.tyre_grip * GRAVITY_MS2
        self._accel_cap = min(p.accel_max_ms2, self._mu_g)
        self._roll_n = p.mass_kg * GRAVITY_MS2 * p.rolling_resistance
        self._drag = 0.5 * 1.2 * p.drag_area_m2  # air density 1.2 kg/m³
        self._energy_per_j = p.energy_cost_per_kwh / 3.6e6
        self._mass = p.mass_kg
        self._eta = p.drivetrain_efficiency
        self._brake_max = p.brake_max_ms2
        self._accel_max = p.accel_max_ms2

    def _reset_totals(self) -> None:
        self._score = 0.0
        self._collisions = 0
        self._short_s = 0.0
        self._hard_s = 0.0
        self._jerk_sq = 0.0
        self._energy_j = 0.0
        self._time_gap_sum = 0.0
        self._distance = 0.0

    @classmethod
    def sample_params(cls, rng: np.random.Generator) -> dict[str, ParamValue]:
        """One car: mass, drag, rolling resistance, powertrain, lag, tyres, the set speed."""
        return {
            "mass_kg": round(float(rng.uniform(1100.0, 2200.0)), 0),
            "drag_area_m2": round(float(rng.uniform(0.55, 0.85)), 3),
            "rolling_resistance": round(float(rng.uniform(0.008, 0.013)), 4),
            "drivetrain_efficiency": round(float(rng.uniform(0.8, 0.9)), 3),
            "accel_max_ms2": round(float(rng.uniform(2.0, 3.5)), 2),
            "lag_s": round(float(rng.uniform(0.3, 0.7)), 2),
            "tyre_grip": round(float(rng.uniform(0.85, 1.0)), 3),
            "set_speed_ms": round(float(rng.uniform(27.0, 33.0)), 1),
        }

    # --- the leader ------------------------------------------------------------------------

    def _draw_leader(self, speed0: float | None) -> None:
        """The leader's whole trajectory (positions and speeds at every step boundary)."""
        p = self.params
        n = self.episode_steps
        # Everything random is drawn in one go, in an order the follower cannot change.
        uniforms = self.np_random.random((n + 1, 5)).tolist()
        shocks = self.np_random.normal(0.0, 1.0, n + 1).tolist()
        driver = _LeadDriver(p, self.dt)
        first = uniforms[0]
        v = speed0 if speed0 is not None else driver.cruise_speed(first[0])
        driver.new_segment(first)
        driver.noise = p.lead_noise_ms2 * shocks[0]
        x = 0.0
        xs = [0.0] * (n + 1)
        vs = [0.0] * (n + 1)
        vs[0] = v
        for k in range(1, n + 1):
            acc = driver.accel(v, uniforms[k], shocks[k])
            v_new = v + acc * self.dt
            if v_new <= 0.0:
                x += v * v / (2.0 * -acc) if acc < 0.0 else 0.0
                v_new = 0.0
            else:
                x += 0.5 * (v + v_new) * self.dt
            v = v_new
            xs[k] = x
            vs[k] = v
        self._lead_x = xs
        self._lead_v = vs

    # --- gymnasium -------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Behind the leader at its speed (``options``: ``gap_m``, ``speed_ms``)."""
        super().reset(seed=seed)
        opts = options or {}
        speed0: float | None = None
        if "speed_ms" in opts:
            speed0 = float(opts["speed_ms"])
            if not 0.0 <= speed0 <= MAX_START_SPEED_MS:
                raise ConfigError(
                    f"CarFollowing.reset: speed_ms={speed0!r} must be in [0, {MAX_START_SPEED_MS}]"
                )
        headway = float(self.np_random.uniform(1.2, 2.5))
        self._draw_leader(speed0)
        v0 = self._lead_v[0]
        gap = START_GAP_M + headway * v0
        if "gap_m" in opts:
            gap = float(opts["gap_m"])
            if not 0.0 < gap <= MAX_START_GAP_M:
                raise ConfigError(
                    f"CarFollowing.reset: gap_m={gap!r} must be in (0, {MAX_START_GAP_M}]"
                )
        self._x = -gap  # the leader starts at 0
        self._v = v0
        self._a = self._act = self._u = 0.0
        self._lead_a = self._lead_ms = 0.0
        self._t = 0
        self._reset_totals()
        return self._obs(), self._info(_Step())

    def _gap(self) -> float:
        return self._lead_x[self._t] - self._x

    def _obs(self) -> NDArray[np.float32]:
        gap = self._gap()
        v = self._v
        v_lead = self._lead_v[self._t]
        headway = min(gap / v, HEADWAY_CAP_S) if v * HEADWAY_CAP_S > gap else HEADWAY_CAP_S
        closing = (v - v_lead) / max(gap, 0.5)
        values = [
            min(gap / GAP_SCALE_M, OBS_BOUND),
            v / SPEED_SCALE_MS,
            (v_lead - v) / REL_SPEED_SCALE_MS,
            self._a / ACCEL_SCALE_MS2,
            max(min(self._lead_a / ACCEL_SCALE_MS2, OBS_BOUND), -OBS_BOUND),
            headway / HEADWAY_SCALE_S,
            max(min(closing, INV_TTC_CAP), -INV_TTC_CAP),
            self.params.set_speed_ms / SPEED_SCALE_MS,
            self._u / ACCEL_SCALE_MS2,
            min(gap / max(v_lead, TIME_GAP_FLOOR_MS), HEADWAY_CAP_S) / HEADWAY_SCALE_S,
            min(math.sqrt(self._lead_ms) / ACCEL_SCALE_MS2, OBS_BOUND),
        ]
        return np.array(values, dtype=np.float32)

    def _info(self, step: _Step) -> dict[str, Any]:
        gap = self._gap()
        v = self._v
        return {
            "gap_m": gap,
            "speed_ms": v,
            "lead_speed_ms": self._lead_v[self._t],
            "accel_ms2": self._a,
            "jerk_ms3": step.jerk,
            "time_headway_s": min(gap / v, HEADWAY_CAP_S) if v > 0.0 else HEADWAY_CAP_S,
            "time_gap_s": step.time_gap,
            "collision": step.collided,
            "energy_kwh": step.energy_j / 3.6e6,
            "cost": step.cost,
            "episode_score": self._score,
            "episode_collisions": self._collisions,
            "episode_short_headway_s": self._short_s,
            "episode_hard_braking_s": self._hard_s,
            "episode_jerk_sq": self._jerk_sq,
            "episode_energy_kwh": self._energy_j / 3.6e6,
            "episode_mean_time_gap_s": self._time_gap_sum / max(self._t, 1),
            "episode_distance_m": self._distance,
        }

    def command(self, action: VehicleAction) -> float:
        """The acceleration (m/s²) action ``x`` commands: ``x * brake_max_ms2``, capped."""
        x = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        if not math.isfinite(x):
            raise ValueError(f"CarFollowing: action {x!r} is not finite")
        x = min(max(x, -1.0), 1.0)
        return min(x * self._brake_max, self._accel_max)

    def _drive(self, u: float) -> _Step:
        """Move the follower for one step under command ``u`` (m/s²)."""
        dt = self.dt
        v = self._v
        # The actuators (drive torque, brake pressure) follow the command with a lag, as far
        # as the tyres let them act; a standing car keeps its brake pressure until released.
        act = self._act + (u - self._act) * self._alpha
        act = min(max(act, -self._mu_g), self._accel_cap)
        self._act = act
        v_new = v + act * dt
        if v_new <= 0.0:  # stops within the step, or stands
            dist = v * v / (-2.0 * act) if act < 0.0 else 0.0
            v_new = 0.0
            a = 0.0
        else:
            dist = 0.5 * (v + v_new) * dt
            a = act
        v_mean = dist / dt
        # Traction energy at the wheels (road-load equation), positive part, over efficiency.
        force = self._mass * act + self._drag * v_mean * v_mean
        if v_mean > 0.0:
            force += self._roll_n
        power = force * v_mean
        step = _Step(
            jerk=(a - self._a) / dt,
            energy_j=power * dt / self._eta if power > 0.0 else 0.0,
            dist=dist,
        )
        self._x += dist
        self._v = v_new
        self._a = a
        self._u = u
        return step

    def step(
        self, action: VehicleAction
    ) -> tuple[NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        """Command an acceleration for one step."""
        p = self.params
        dt = self.dt
        step = self._drive(self.command(action))
        t = self._t + 1
        self._t = t
        lead_v = self._lead_v
        lead_a = (lead_v[t] - lead_v[t - 1]) / dt
        self._lead_a = lead_a
        self._lead_ms += (lead_a * lead_a - self._lead_ms) * self._unsteady_alpha
        gap = self._lead_x[t] - self._x
        if gap <= 0.0:  # a collision: counted, priced, and a new car goes on behind
            step.collided = True
            self._collisions += 1
            self._x = self._lead_x[t] - p.restart_gap_m
            self._v = lead_v[t]
            self._a = self._act = self._u = 0.0
            gap = p.restart_gap_m
        short = gap < p.headway_min_s * self._v
        hard = self._a < -p.hard_brake_ms2
        step.time_gap = min(gap / max(lead_v[t], TIME_GAP_FLOOR_MS), TIME_GAP_CAP_S)
        jerk_sq = step.jerk * step.jerk * dt
        step.cost = (
            (p.collision_cost if step.collided else 0.0)
            + (p.headway_cost_per_s * dt if short else 0.0)
            + (p.hard_brake_cost_per_s * dt if hard else 0.0)
            + p.jerk_cost * jerk_sq
            + step.energy_j * self._energy_per_j
            + p.time_gap_cost_per_s * step.time_gap * dt
        )
        self._score += step.cost
        if short:
            self._short_s += dt
        if hard:
            self._hard_s += dt
        self._jerk_sq += jerk_sq
        self._energy_j += step.energy_j
        self._time_gap_sum += step.time_gap
        self._distance += step.dist
        reward = -step.cost * p.reward_scale
        return self._obs(), reward, False, t >= self.episode_steps, self._info(step)

    def render(self) -> str | None:
        """A one-line text status (``render_mode="ansi"``)."""
        if self.render_mode != "ansi":
            return None
        return (
            f"t {self._t * self.dt:6.1f} s gap {self._gap():6.1f} m v {self._v:5.1f} m/s "
            f"lead {self._lead_v[self._t]:5.1f} m/s a {self._a:+5.2f} m/s2 "
            f"collisions {self._collisions} score {self._score:.2f}"
        )


@dataclass(slots=True)
class _Step:
    """What one step did: for the score and ``info``."""

    jerk: float = 0.0
    energy_j: float = 0.0
    dist: float = 0.0
    time_gap: float = 0.0
    collided: bool = False
    cost: float = 0.0


class _LeadDriver:
    """The leader's driver, one step at a time, from pre-drawn random numbers.

    ``uniforms`` of a step: (hard brake?, its length, stop?, target speed, segment length).
    """

    def __init__(self, p: CarFollowingParams, dt: float) -> None:
        self.p = p
        self.dt = dt
        mu_g = p.road_friction * GRAVITY_MS2  # the leader's tyres are new
        self.accel_cap = min(p.lead_accel_ms2, mu_g)
        self.decel_cap = min(p.lead_decel_ms2, mu_g)
        self.hard = p.hard_brake_share * mu_g
        self.hard_p = 1.0 - math.exp(-p.hard_brake_per_min * dt / 60.0)
        self.corr = math.exp(-dt / LEAD_NOISE_CORRELATION_S)
        self.noise_sd = p.lead_noise_ms2 * math.sqrt(1.0 - self.corr * self.corr)
        self.noise = 0.0
        self.goal = 0.0
        self.segment_left = 0.0
        self.braking_left = 0.0

    def cruise_speed(self, u: float) -> float:
        """A target speed when not stopping."""
        p = self.p
        return p.lead_speed_low_ms + (p.lead_speed_high_ms - p.lead_speed_low_ms) * u

    def new_segment(self, u: list[float]) -> None:
        """Draw the next target speed (or a stop) and how long it holds."""
        p = self.p
        self.goal = 0.0 if u[2] < p.stop_share else self.cruise_speed(u[3])
        self.segment_left = p.segment_min_s + (p.segment_max_s - p.segment_min_s) * u[4]

    def accel(self, v: float, u: list[float], shock: float) -> float:
        """The leader's acceleration this step at speed ``v``."""
        p = self.p
        self.noise = self.corr * self.noise + self.noise_sd * shock
        if self.braking_left <= 0.0 and u[0] < self.hard_p and v > HARD_BRAKE_MIN_SPEED_MS:
            self.braking_left = (
                p.hard_brake_min_s + (p.hard_brake_max_s - p.hard_brake_min_s) * u[1]
            )
        if self.braking_left > 0.0:
            acc = -self.hard
            self.braking_left -= self.dt
            if self.braking_left <= 0.0:  # after a hard brake the leader picks a new speed
                self.segment_left = 0.0
        else:
            noise = self.noise if v > LEAD_NOISE_MIN_SPEED_MS else 0.0
            acc = p.lead_gain_per_s * (self.goal - v) + noise
            acc = min(max(acc, -self.decel_cap), self.accel_cap)
        self.segment_left -= self.dt
        if self.segment_left <= 0.0:
            self.new_segment(u)
        return acc


# --- baselines -------------------------------------------------------------------------------


def _world(env: gym.Env[Any, Any]) -> CarFollowing:
    world = env.unwrapped
    if not isinstance(world, CarFollowing):
        raise ConfigError(f"this baseline needs a CarFollowing world, got {type(world).__name__}")
    return world


class _FollowingController:
    """Shared decoding of the observation and encoding of an acceleration as an action."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        p = _world(env).base_params
        self.accel_max = p.accel_max_ms2
        self.brake_max = p.brake_max_ms2

    def reset(self) -> None:
        """Stateless."""

    @staticmethod
    def decode(obs: NDArray[np.float32]) -> tuple[float, float, float, float]:
        """(gap m, speed m/s, leader's speed m/s, set speed m/s) from an observation."""
        gap = float(obs[OBS_GAP]) * GAP_SCALE_M
        v = float(obs[OBS_SPEED]) * SPEED_SCALE_MS
        v_lead = v + float(obs[OBS_REL_SPEED]) * REL_SPEED_SCALE_MS
        return gap, v, v_lead, float(obs[OBS_SET_SPEED]) * SPEED_SCALE_MS

    def action(self, accel: float) -> NDArray[np.float32]:
        """The action that commands ``accel`` m/s² (clipped to what may be commanded)."""
        x = min(accel, self.accel_max) / self.brake_max
        return np.array([min(max(x, -1.0), 1.0)], dtype=np.float32)


class IntelligentDriver(_FollowingController):
    """The Intelligent Driver Model (Treiber, Hennecke & Helbing 2000, Phys. Rev. E 62, 1805).

    ``a_cmd = a [1 - (v/v0)^delta - (s*/s)^2]`` with the desired gap
    ``s* = s0 + max(0, v T + v (v - v_lead) / (2 sqrt(a b)))`` (the ``max`` as in Treiber &
    Kesting, *Traffic Flow Dynamics*, 2013). Defaults: ``T = 1.5 s``, ``s0 = 2 m``,
    ``a = 1.0 m/s²``, ``b = 1.5 m/s²``, ``delta = 4``, and ``v0`` the driver's set speed. It
    brakes as hard as the situation asks (the tyres cap it) and knows nothing of the friction.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        *,
        time_gap_s: float = 1.5,
        min_gap_m: float = 2.0,
        accel_ms2: float = 1.0,
        decel_ms2: float = 1.5,
        delta: float = 4.0,
    ) -> None:
        super().__init__(env)
        if min(time_gap_s, accel_ms2, decel_ms2, delta) <= 0.0 or min_gap_m < 0.0:
            raise ConfigError(
                "IntelligentDriver: time_gap_s, accel_ms2, decel_ms2, delta must be > 0 "
                "and min_gap_m >= 0"
            )
        self.time_gap = time_gap_s
        self.min_gap = min_gap_m
        self.a = accel_ms2
        self.delta = delta
        self.two_sqrt_ab = 2.0 * math.sqrt(accel_ms2 * decel_ms2)

    def accel(self, gap: float, v: float, v_lead: float, v0: float) -> float:
        """The IDM's acceleration, m/s²."""
        s_star = self.min_gap + max(0.0, v * self.time_gap + v * (v - v_lead) / self.two_sqrt_ab)
        s = max(gap, 0.1)
        return self.a * (1.0 - math.pow(v / v0, self.delta) - (s_star / s) ** 2)

    def act(self, obs: NDArray[np.float32]) -> Any:
        gap, v, v_lead, v0 = self.decode(obs)
        return self.action(self.accel(gap, v, v_lead, v0))


class ConstantTimeGapACC(_FollowingController):
    """A production-style ACC with a constant-time-gap spacing policy.

    Gap control as identified on a production ACC by Milanés & Shladover (2014, Transp. Res.
    Part C 48, 285-300): ``a = k1 (gap - s0 - h v) + k2 (v_lead - v)`` with ``k1 = 0.23 /s²``,
    ``k2 = 0.07 /s``; speed control ``a = kv (v_set - v)`` with ``kv = 0.4 /s``; the lower of the
    two is commanded, within ISO 15622's envelope for automatic control (at most 2 m/s² of
    acceleration and 3.5 m/s² of deceleration). Time gap ``h = 1.5 s`` and standstill gap
    ``s0 = 2 m``, as the IDM's.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        *,
        time_gap_s: float = 1.5,
        min_gap_m: float = 2.0,
        k_gap: float = 0.23,
        k_speed_diff: float = 0.07,
        k_cruise: float = 0.4,
        accel_limit_ms2: float = 2.0,
        decel_limit_ms2: float = 3.5,
    ) -> None:
        super().__init__(env)
        if min(time_gap_s, k_gap, k_cruise, accel_limit_ms2, decel_limit_ms2) <= 0.0:
            raise ConfigError(
                "ConstantTimeGapACC: time_gap_s, k_gap, k_cruise and the limits must be > 0"
            )
        self.time_gap = time_gap_s
        self.min_gap = min_gap_m
        self.k_gap = k_gap
        self.k_speed_diff = k_speed_diff
        self.k_cruise = k_cruise
        self.accel_limit = accel_limit_ms2
        self.decel_limit = decel_limit_ms2

    def accel(self, gap: float, v: float, v_lead: float, v_set: float) -> float:
        """The ACC's acceleration request, m/s²."""
        follow = self.k_gap * (gap - self.min_gap - self.time_gap * v) + self.k_speed_diff * (
            v_lead - v
        )
        cruise = self.k_cruise * (v_set - v)
        request = min(max(min(follow, cruise), -self.decel_limit), self.accel_limit)
        closing = v - v_lead
        if closing > 0.0:  # collision avoidance: stop closing before the standstill gap
            request = min(request, -closing * closing / (2.0 * max(gap - self.min_gap, 0.1)))
        return request

    def act(self, obs: NDArray[np.float32]) -> Any:
        gap, v, v_lead, v_set = self.decode(obs)
        return self.action(self.accel(gap, v, v_lead, v_set))
