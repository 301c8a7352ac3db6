"""``society/SumoTraffic-v0``: SUMO's single-intersection network through sumo-rl (optional extra).

A real microscopic simulator next to the queue model of ``society/TrafficSignal-v0``: vehicles
accelerate, keep gaps, change lanes and queue back to where they enter the network. The world
wraps sumo-rl's single-agent ``SumoEnvironment`` on the ``single-intersection`` network that
sumo-rl ships (two one-way approaches of two lanes each, north->south and west->east, and a
signal with two green phases), running SUMO in-process through libsumo: no GUI, no sockets, no
``sumo`` binary.

Demand. Vehicles enter by Poisson processes (SUMO flows with ``period="exp(rate)"``, drawn from
SUMO's own random stream) at the regime's rate per approach times the device's multiplier, plus
an optional *event* surge on the north approach in a window of the episode. The route file is
generated from those rates, never taken from the network, into a temporary directory of the env,
and a new regime takes effect at the next ``reset``, which restarts the simulation with it.

Determinism. Each episode's SUMO seed is drawn from the env's seeded generator at ``reset`` (or
fixed with ``sumo_seed=``): one reset seed and one action sequence give identical observations,
rewards and infos.

The extra is optional: this module imports sumo-rl and libsumo only when an env is built, so
importing :mod:`agents.worlds` never needs them, and the registry registers the world only when
:func:`sumo_available` says they are installed (``pip install .[sumo]``).

libsumo runs one simulation per process. A second env of this class that resets in the same
process takes the simulation over; the first then raises ``gymnasium.error.ResetNeeded`` on its
next step, and its next reset takes it back. Run several of them in separate processes
(``SubprocVecEnv``, one learner per process as the society does).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import shutil
import tempfile
import types
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from agents.exceptions import ConfigError
from agents.worlds.base import EpisodeRecipe, ParamValue, World, WorldParams, check_ranges
from agents.worlds.drift import Regime

__all__ = [
    "INCOMING_LANES",
    "OBS_DENSITY",
    "OBS_MIN_GREEN",
    "OBS_PHASE",
    "OBS_QUEUE",
    "PHASE_LANES",
    "SATURATION_FLOW_PER_LANE",
    "SUMO_MISSING",
    "SUMO_REGIMES",
    "SumoFixedTime",
    "SumoLongestQueue",
    "SumoMaxPressure",
    "SumoTrafficParams",
    "SumoTrafficSignal",
    "route_file_text",
    "sumo_available",
]

SUMO_MISSING = "the sumo extra is not installed: pip install .[sumo]"
"""Why the world is unavailable, with the fix (tests skip with it, errors carry it)."""

NETWORK = "single-intersection"
TLS_ID = "t"
INCOMING_LANES = ("n_t_0", "n_t_1", "w_t_0", "w_t_1")
"""The signal's incoming lanes, in the order of sumo-rl's observation."""
PHASE_LANES: tuple[tuple[int, ...], ...] = ((0, 1), (2, 3))
"""Lane indices each green phase serves: phase 0 north->south, phase 1 west->east."""
N_PHASES = len(PHASE_LANES)
OBS_PHASE = slice(0, N_PHASES)
OBS_MIN_GREEN = N_PHASES
OBS_DENSITY = slice(N_PHASES + 1, N_PHASES + 1 + len(INCOMING_LANES))
OBS_QUEUE = slice(N_PHASES + 1 + len(INCOMING_LANES), N_PHASES + 1 + 2 * len(INCOMING_LANES))
OBS_DIM = N_PHASES + 1 + 2 * len(INCOMING_LANES)

SATURATION_FLOW_PER_LANE = 0.45
"""Vehicles/s one lane of this network discharges under a long green, measured here with SUMO
1.28's default car (insertion at the network's edge is the bottleneck: 3,240 veh/h per
two-lane approach). Used by the fixed-time plan; a traffic engineer would count it."""

_MAX_SEED = 2**31 - 1


def sumo_available() -> bool:
    """Whether the ``sumo`` extra (sumo-rl, libsumo and its traci) is installed.

    Checked without importing anything (a libsumo import loads 230 MB of shared libraries);
    a broken installation is reported when an env is built.
    """
    return all(
        importlib.util.find_spec(name) is not None for name in ("sumo_rl", "libsumo", "traci")
    )


def _check_seed(value: object, what: str) -> int:
    """A SUMO seed: an int in ``[0, 2^31)``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{what}: sumo_seed={value!r} must be an int")
    if not 0 <= int(value) <= _MAX_SEED:
        raise ConfigError(f"{what}: sumo_seed={value!r} must be in [0, 2^31 - 1]")
    return int(value)


def _load_sumo() -> tuple[Any, Any]:
    """Import ``(sumo_rl, libsumo)`` and point sumo-rl at libsumo; :class:`ConfigError` if absent.

    sumo-rl talks to SUMO through the module it imported as ``traci`` and decides at import
    time, from ``LIBSUMO_AS_TRACI``, whether that is libsumo. Whether ``traci`` really became
    libsumo depends on the import order of whoever came first (with the variable set, importing
    ``libsumo`` before ``traci`` even leaves ``traci`` half-initialised), so instead of relying
    on the variable this sets sumo-rl's two module globals itself: its ``traci`` is libsumo and
    its ``LIBSUMO`` flag is on. ``libsumo`` is imported before ``sumo_rl`` because it sets
    ``SUMO_HOME`` (to the ``sumo-data`` package), which sumo-rl requires at import.
    """
    if not sumo_available():
        raise ConfigError(f"society/SumoTraffic-v0: {SUMO_MISSING}")
    try:
        libsumo: Any = importlib.import_module("libsumo")
        sumo_rl: Any = importlib.import_module("sumo_rl")
        env_module: Any = importlib.import_module("sumo_rl.environment.env")
    except ImportError as exc:  # e.g. a shared library libsumo needs is missing
        raise ConfigError(f"society/SumoTraffic-v0: cannot import sumo-rl/libsumo: {exc}") from exc
    env_module.traci = libsumo
    env_module.LIBSUMO = True
    return sumo_rl, libsumo


@dataclass(frozen=True)
class SumoTrafficParams(WorldParams):
    """Every parameter of the SUMO world, with units."""

    # Device: one intersection's demand relative to the regime's.
    ns_mult: float = 1.0
    """Multiplier on the north approach's demand (this intersection's share of the corridor)."""
    we_mult: float = 1.0
    """Multiplier on the west approach's demand."""
    # Regime: the demand pattern, vehicles/h entering each approach.
    ns_veh_per_h: float = 500.0
    """Vehicles/h entering from the north (driving south)."""
    we_veh_per_h: float = 700.0
    """Vehicles/h entering from the west (driving east)."""
    event_veh_per_h: float = 0.0
    """Extra vehicles/h from the north during the event window (0: no event)."""
    event_start_frac: float = 0.35
    """Start of the event window as a fraction of the episode."""
    event_end_frac: float = 0.65
    """End of the event window as a fraction of the episode."""
    # Reward scale.
    reward_scale: float = 0.01
    """Reward = -(vehicle-seconds waited in the step) * reward_scale; the default, 1 / (5 * 20),
    makes it minus the mean number of waiting vehicles in units of 20."""
    # Structure: fixed for the world's life (they are sumo-rl's constructor arguments).
    episode_s: int = 1800
    """Simulated seconds per episode (a multiple of ``step_s``)."""
    step_s: int = 5
    """Simulated seconds per agent step (sumo-rl's ``delta_time``)."""
    yellow_s: int = 2
    """Yellow time at each phase change, s."""
    min_green_s: int = 5
    """Minimum green the signal enforces after its yellow, s (a change requested earlier is
    ignored)."""

    def validate(self) -> None:
        what = "SumoTrafficSignal"
        check_ranges(
            self,
            what,
            positive=("ns_mult", "we_mult", "reward_scale", "episode_s", "step_s", "yellow_s"),
            non_negative=("ns_veh_per_h", "we_veh_per_h", "event_veh_per_h", "min_green_s"),
            fractions=("event_start_frac", "event_end_frac"),
        )
        if self.event_start_frac >= self.event_end_frac:
            raise ConfigError(
                f"{what}: event_start_frac={self.event_start_frac!r} must be below "
                f"event_end_frac={self.event_end_frac!r}"
            )
        if self.step_s <= self.yellow_s:
            raise ConfigError(
                f"{what}: step_s={self.step_s!r} must exceed yellow_s={self.yellow_s!r} "
                "(the yellow happens within one step)"
            )
        if self.episode_s % self.step_s:
            raise ConfigError(
                f"{what}: episode_s={self.episode_s!r} must be a multiple of step_s={self.step_s!r}"
            )


def _regimes(*regimes: Regime) -> Mapping[str, Regime]:
    return types.MappingProxyType({r.name: r for r in regimes})


_NO_EVENT = {"event_veh_per_h": 0.0}
SUMO_REGIMES: Mapping[str, Regime] = _regimes(
    Regime(
        "light",
        {"ns_veh_per_h": 500.0, "we_veh_per_h": 700.0, **_NO_EVENT},
        "off-peak: about a third of the intersection's capacity",
    ),
    Regime(
        "rush",
        {"ns_veh_per_h": 900.0, "we_veh_per_h": 1600.0, **_NO_EVENT},
        "rush hour on the west->east main road: near saturation",
    ),
    Regime(
        "reversed",
        {"ns_veh_per_h": 1600.0, "we_veh_per_h": 900.0, **_NO_EVENT},
        "a detour makes north->south the main road",
    ),
    Regime(
        "event",
        {"ns_veh_per_h": 500.0, "we_veh_per_h": 700.0, "event_veh_per_h": 1500.0},
        "off-peak plus a stadium emptying southbound in the middle of the episode",
    ),
)
"""Demand patterns of the SUMO world (vehicles/h per approach, before device multipliers)."""


def route_file_text(p: SumoTrafficParams) -> str:
    """The SUMO route file (``.rou.xml``) of ``p``'s demand: one Poisson flow per stream.

    Rates are vehicles/s in ``period="exp(rate)"``; SUMO draws the arrival times from its seeded
    random stream, so the file depends on the demand only and is shared by all episodes of a
    regime. A stream with rate 0 has no flow (SUMO rejects ``exp(0)``).
    """
    end = p.episode_s
    streams = (
        ("ns", "route_ns", p.ns_veh_per_h * p.ns_mult, 0, end),
        ("we", "route_we", p.we_veh_per_h * p.we_mult, 0, end),
        (
            "ns_event",
            "route_ns",
            p.event_veh_per_h * p.ns_mult,
            round(p.event_start_frac * end),
            round(p.event_end_frac * end),
        ),
    )
    lines = [
        "<routes>",
        '    <route id="route_ns" edges="n_t t_s"/>',
        '    <route id="route_we" edges="w_t t_e"/>',
    ]
    for name, route, per_h, begin, stop in streams:
        if per_h <= 0.0 or stop <= begin:
            continue
        lines.append(
            f'    <flow id="flow_{name}" route="{route}" begin="{begin}" end="{stop}" '
            f'period="exp({per_h / 3600.0:.9f})" departSpeed="max" departPos="base" '
            'departLane="best"/>'
        )
    lines.append("</routes>")
    return "\n".join(lines) + "\n"


class _Meter:
    """Replaces sumo-rl's one-second step to count what its observation leaves out.

    Every simulated second: vehicles halted on the incoming lanes (speed < 0.1 m/s, SUMO's
    definition of waiting) plus vehicles that could not enter the network yet (the *backlog*,
    so a controller cannot hide a queue by letting it spill back beyond the network's edge),
    vehicles that entered and vehicles that completed their trip (served).
    """

    def __init__(self, libsumo: Any) -> None:
        self._step = libsumo.simulationStep
        self._halting = libsumo.lane.getLastStepHaltingNumber
        self._sim = libsumo.simulation
        self.queues = [0] * len(INCOMING_LANES)
        self.waiting = 0
        self.loaded = 0
        self.entered = 0
        self.served = 0

    def __call__(self) -> None:
        self._step()
        halting = self._halting
        self.queues = [int(halting(lane)) for lane in INCOMING_LANES]
        sim = self._sim
        self.loaded += int(sim.getLoadedNumber())
        self.entered += int(sim.getDepartedNumber())
        self.served += int(sim.getArrivedNumber())
        self.waiting += sum(self.queues) + self.loaded - self.entered

    @property
    def backlog(self) -> int:
        """Vehicles due to enter that SUMO could not insert yet."""
        return self.loaded - self.entered


class _Simulation:
    """libsumo's one simulation per process: which env runs it, through which sumo-rl env.

    ``inner`` outlives its owner when an env is dropped without ``close()``: sumo-rl's env sits
    in a reference cycle with its traffic signals, so it is freed (and closes SUMO) only when
    the garbage collector runs. The next env to reset closes it instead.
    """

    owner: weakref.ref[SumoTrafficSignal] | None = None
    inner: Any = None

    def runs(self, env: SumoTrafficSignal) -> bool:
        return self.owner is not None and self.owner() is env

    def claim(self, env: SumoTrafficSignal, libsumo: Any) -> None:
        """Make ``env`` the one whose simulation libsumo runs (see the module docstring)."""
        if self.runs(env):
            return
        previous = self.owner() if self.owner is not None else None
        if previous is not None:
            previous._taken_over = True  # noqa: SLF001 - told at its next step
        if self.inner is not None:
            self.inner.close()
        elif libsumo.isLoaded():
            raise ConfigError(
                "SumoTrafficSignal: libsumo is already running a simulation that no "
                "SumoTrafficSignal owns (another SUMO user in this process?); libsumo runs "
                "one simulation per process"
            )
        self.owner = weakref.ref(env)
        self.inner = None

    def release(self, env: SumoTrafficSignal) -> None:
        """Stop the simulation if ``env`` runs it."""
        if self.runs(env):
            if self.inner is not None:
                self.inner.close()
            self.owner = None
            self.inner = None


_SIMULATION = _Simulation()


class SumoTrafficSignal(World[SumoTrafficParams, np.int64]):
    """The signal of SUMO's single-intersection network (``society/SumoTraffic-v0``).

    Action: ``Discrete(2)``, the green phase to show next (0: north->south, 1: west->east).
    Keeping the phase extends it; another phase starts ``yellow_s`` of yellow, unless the phase
    has not yet shown ``min_green_s`` of green (then the request is ignored).

    Observation: sumo-rl's default, 11 floats in [0, 1]: the green phase one-hot, whether the
    minimum green has passed, then for each incoming lane (:data:`INCOMING_LANES`) its density
    and its queue (vehicles, and halted vehicles, over the lane's capacity).

    Reward: ``-(vehicle-seconds waited in the step) * reward_scale``, waiting counted every
    simulated second as in :class:`_Meter` (sumo-rl's own reward is not used).

    ``info``: ``total_waiting_time`` (vehicle-seconds, episode total), ``throughput`` (vehicles
    that completed their trip, episode total), ``waiting_time`` (this step), ``queues`` (halted
    vehicles per incoming lane, int array), ``backlog`` (vehicles not yet inserted), ``phase``,
    ``arrivals`` (vehicles that entered this step), ``sim_time_s``, ``sumo_seed``.

    Args:
        regime: initial regime (default ``light``).
        render_mode: ``"ansi"`` or ``None``; SUMO's GUI is not supported.
        sumo_seed: SUMO's seed for every episode (sumo-rl's behaviour); ``None`` (default)
            draws one per episode from the reset seed.
        **params: device and structural parameters (:class:`SumoTrafficParams`).
    """

    regimes: ClassVar[Mapping[str, Regime]] = SUMO_REGIMES
    default_regime: ClassVar[str | None] = "light"
    #: libsumo runs one simulation per process: episodes are played one after another.
    one_per_process: ClassVar[bool] = True
    #: libsumo runs one simulation per process: another env's reset interrupts this one's
    #: episode (the learner resets its own env after using a sandbox).
    single_instance: ClassVar[bool] = True
    structural_params: ClassVar[frozenset[str]] = frozenset(
        {"episode_s", "step_s", "yellow_s", "min_green_s"}
    )
    metrics: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {"total_waiting_time": "total_waiting_time", "throughput": "throughput"}
    )

    def __init__(
        self,
        *,
        regime: str | None = None,
        render_mode: str | None = None,
        sumo_seed: int | None = None,
        **params: ParamValue,
    ) -> None:
        if not sumo_available():
            raise ConfigError(f"SumoTrafficSignal: {SUMO_MISSING}")
        if sumo_seed is not None:
            sumo_seed = _check_seed(sumo_seed, "SumoTrafficSignal")
        self._route_text = ""
        super().__init__(SumoTrafficParams(), params, regime=regime, render_mode=render_mode)
        p = self.base_params
        self.fixed_sumo_seed = sumo_seed
        self.episode_steps = p.episode_s // p.step_s
        self.n_phases = N_PHASES
        self.phase_lanes = PHASE_LANES
        self.observation_space = spaces.Box(0.0, 1.0, shape=(OBS_DIM,), dtype=np.float32)
        self.action_space = spaces.Discrete(N_PHASES)
        self.sumo_seed = 0
        """SUMO's seed of the current episode."""
        self._inner: Any = None
        self._meter: _Meter | None = None
        self._entered_before = 0
        self._routes: Path | None = None
        self._routes_cleanup: weakref.finalize[Any, Any] | None = None
        self._t = 0
        self._taken_over = False

    # --- parameters and devices ----------------------------------------------------------

    def _params_changed(self) -> None:
        self._route_text = route_file_text(self.params)

    @classmethod
    def sample_params(cls, rng: np.random.Generator) -> dict[str, ParamValue]:
        """One intersection: how much of the corridor's demand reaches each approach."""
        return {
            "ns_mult": round(float(rng.uniform(0.8, 1.2)), 3),
            "we_mult": round(float(rng.uniform(0.8, 1.2)), 3),
        }

    # --- the simulation ------------------------------------------------------------------

    def _route_file(self) -> Path:
        """The route file of the parameters in force, written once per distinct demand."""
        if self._routes is None:
            self._routes = Path(tempfile.mkdtemp(prefix="agents-sumo-"))
            # Removed at close(), or silently when the env is collected without it.
            self._routes_cleanup = weakref.finalize(
                self, shutil.rmtree, self._routes, ignore_errors=True
            )
        digest = hashlib.sha256(self._route_text.encode()).hexdigest()[:16]
        path = self._routes / f"demand-{digest}.rou.xml"
        if not path.exists():
            path.write_text(self._route_text, encoding="utf-8")
        return path

    def _build_inner(self, sumo_rl: Any, route: Path) -> Any:
        """sumo-rl's env for this world's structure; checked against the spaces declared."""
        p = self.params
        net = Path(sumo_rl.__file__).parent / "nets" / NETWORK / f"{NETWORK}.net.xml"
        if not net.is_file():
            raise ConfigError(f"SumoTrafficSignal: sumo-rl has no network at {net}")
        inner = sumo_rl.SumoEnvironment(
            net_file=str(net),
            route_file=str(route),
            single_agent=True,
            num_seconds=p.episode_s,
            delta_time=p.step_s,
            yellow_time=p.yellow_s,
            min_green=p.min_green_s,
            reward_fn="queue",  # the cheapest; this world computes its own reward
            add_system_info=False,
            add_per_agent_info=False,
            sumo_warnings=False,
            sumo_seed=0,
            max_depart_delay=-1,
            time_to_teleport=-1,
        )
        signal = inner.traffic_signals[TLS_ID]
        if tuple(signal.lanes) != INCOMING_LANES or inner.action_space.n != N_PHASES:
            raise ConfigError(
                f"SumoTrafficSignal: sumo-rl's {NETWORK} network changed (lanes "
                f"{signal.lanes}, {inner.action_space.n} phases); pin sumo-rl==1.4.5"
            )
        return inner

    # --- gymnasium API -------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Restart SUMO with the demand in force (``options``: ``sumo_seed``)."""
        super().reset(seed=seed)
        opts = options or {}
        if "sumo_seed" in opts:
            sumo_seed = opts["sumo_seed"]
        elif self.fixed_sumo_seed is not None:
            sumo_seed = self.fixed_sumo_seed
        else:
            sumo_seed = int(self.np_random.integers(0, _MAX_SEED))
        sumo_seed = _check_seed(sumo_seed, "SumoTrafficSignal.reset")
        sumo_rl, libsumo = _load_sumo()
        _SIMULATION.claim(self, libsumo)
        self._taken_over = False
        route = self._route_file()
        if self._inner is None:
            self._inner = self._build_inner(sumo_rl, route)
        _SIMULATION.inner = self._inner
        self._inner._route = str(route)  # noqa: SLF001 - sumo-rl reads it at each restart
        # sumo-rl advances SUMO one second at a time through this method: count as it goes.
        self._meter = _Meter(libsumo)
        self._inner._sumo_step = self._meter  # noqa: SLF001
        self.sumo_seed = sumo_seed
        obs, _ = self._inner.reset(seed=sumo_seed)
        self._t = 0
        self._entered_before = 0
        return np.array(obs, dtype=np.float32), self._info(0)

    def _info(self, waiting: int) -> dict[str, Any]:
        meter = self._meter
        assert meter is not None
        return {
            "total_waiting_time": float(meter.waiting),
            "throughput": meter.served,
            "waiting_time": float(waiting),
            "queues": np.array(meter.queues, dtype=np.int64),
            "backlog": meter.backlog,
            "phase": self.phase,
            "arrivals": meter.entered - self._entered_before,
            "sim_time_s": self._t * self.params.step_s,
            "sumo_seed": self.sumo_seed,
        }

    @property
    def phase(self) -> int:
        """The green phase shown (or being changed to), 0 before the first reset."""
        if self._inner is None:
            return 0
        return int(self._inner.traffic_signals[TLS_ID].green_phase)

    def step(
        self, action: np.int64
    ) -> tuple[NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        """Show phase ``action`` for ``step_s`` simulated seconds (after a yellow if a change)."""
        a = int(action)
        if not 0 <= a < N_PHASES:
            raise ValueError(f"SumoTrafficSignal: action {a} is not a phase in [0, {N_PHASES})")
        if self._taken_over:
            raise gym.error.ResetNeeded(
                "SumoTrafficSignal: another SumoTrafficSignal in this process reset and took "
                "over libsumo, which runs one simulation per process; reset this env to start "
                "a new episode, or run each env in its own process (SubprocVecEnv)"
            )
        meter = self._meter
        if meter is None or not _SIMULATION.runs(self):
            raise gym.error.ResetNeeded("SumoTrafficSignal: call reset() before step()")
        waited_before = meter.waiting
        self._entered_before = meter.entered
        obs, _, _, _, _ = self._inner.step(a)
        self._t += 1
        waiting = meter.waiting - waited_before
        reward = -waiting * self.params.reward_scale
        truncated = self._t >= self.episode_steps
        info = self._info(waiting)
        return np.array(obs, dtype=np.float32), reward, False, truncated, info

    def render(self) -> str | None:
        """A one-line text status (``render_mode="ansi"``)."""
        if self.render_mode != "ansi" or self._meter is None:
            return None
        meter = self._meter
        queues = " ".join(
            f"{lane}:{q}" for lane, q in zip(INCOMING_LANES, meter.queues, strict=True)
        )
        return (
            f"t={self._t * self.params.step_s}s phase {self.phase} {queues} backlog {meter.backlog}"
        )

    def episode_recipe(self) -> EpisodeRecipe:
        """What rebuilds the current episode in another process (agents.worlds.shadow).

        The device, the regime on top of it, and this episode's SUMO seed: demand does not
        depend on the signal's actions, so that is the whole episode.
        """
        base = self.base_params.as_dict()
        now = self.params.as_dict()
        return EpisodeRecipe(
            kwargs=base,
            regime={name: value for name, value in now.items() if base[name] != value},
            options={"sumo_seed": self.sumo_seed},
        )

    def close(self) -> None:
        """Stop this env's simulation (if it still runs it) and delete its route files."""
        _SIMULATION.release(self)
        if self._routes_cleanup is not None:
            self._routes_cleanup()
            self._routes_cleanup = None
            self._routes = None
        super().close()


# --- baselines ----------------------------------------------------------------------------
# Controllers people use today, acting from sumo-rl's observation only; registered in
# ``agents.worlds.baselines.BASELINES["society/SumoTraffic-v0"]``.


def _world(env: gym.Env[Any, Any]) -> SumoTrafficSignal:
    target = env.unwrapped
    if not isinstance(target, SumoTrafficSignal):
        raise ConfigError(
            f"this baseline needs a SumoTrafficSignal world, got {type(target).__name__}"
        )
    return target


class _SumoPhaseController:
    """Shared decoding of sumo-rl's observation and a count of the steps in the current phase.

    The observation tells only *whether* the minimum green has passed, not for how long a phase
    has run, so the controller counts the steps since the phase it sees last changed.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        world = _world(env)
        self.world_params = world.base_params
        self.step_s = world.base_params.step_s
        self._phase = -1
        self._steps_in_phase = 0

    def reset(self) -> None:
        self._phase = -1
        self._steps_in_phase = 0

    def observe(self, obs: NDArray[np.float32]) -> tuple[int, float]:
        """(current green phase, seconds it has been shown, counting its yellow)."""
        phase = int(np.argmax(obs[OBS_PHASE]))
        if phase != self._phase:
            self._phase = phase
            self._steps_in_phase = 0
        self._steps_in_phase += 1
        return phase, (self._steps_in_phase - 1) * self.step_s

    def _switch_allowed(self, obs: NDArray[np.float32], in_phase_s: float, min_s: float) -> bool:
        return bool(obs[OBS_MIN_GREEN] > 0.5) and in_phase_s >= min_s - 1e-6  # noqa: PLR2004


class SumoFixedTime(_SumoPhaseController):
    """A fixed-time plan: each phase in turn for a fixed number of steps.

    Webster's plan for the device's design demand (its base parameters: the ``light`` rates,
    which are the defaults, times its multipliers): cycle ``C = (1.5 L + 5) / (1 - Y)`` with
    ``L`` the lost time per cycle and ``Y`` the sum of the approaches' flow ratios at
    :data:`SATURATION_FLOW_PER_LANE`, effective greens in proportion to the flow ratios and at
    least the signal's minimum green; each phase lasts its green plus its lost time, rounded to
    whole steps and never shorter than the signal allows. The lost time per phase is the 2 s
    yellow alone: SUMO's drivers use the yellow and start without delay, and for the default
    device in ``light`` the resulting 20 s cycle was the best of the plans from 20 to 55 s
    (1,281 vehicle-seconds per episode against 1,591 for 25 s and 2,011 for 30 s). It cannot
    react to a rush or an event.

    Args:
        env: the SUMO world.
        green_s: effective green per phase, seconds; ``None`` for Webster's plan.
    """

    def __init__(self, env: gym.Env[Any, Any], *, green_s: Sequence[float] | None = None) -> None:
        super().__init__(env)
        if green_s is None:
            green_s = self.webster_greens()
        if len(green_s) != N_PHASES or any(g <= 0 for g in green_s):
            raise ConfigError(
                f"SumoFixedTime: green_s={list(green_s)!r} needs {N_PHASES} positive values"
            )
        p = self.world_params
        self.green_s = tuple(float(g) for g in green_s)
        # Never shorter than the signal lets a phase be: a change it ignores would put the plan
        # out of step with the signal.
        shortest = math.ceil((p.min_green_s + p.yellow_s) / self.step_s)
        self.durations = tuple(
            max(shortest, round((g + p.yellow_s) / self.step_s)) for g in self.green_s
        )
        self._plan_phase = 0
        self._elapsed = 0

    def webster_greens(self) -> list[float]:
        """Greens (s) of Webster's plan for the design demand."""
        p = self.world_params
        capacity = SATURATION_FLOW_PER_LANE * 2 * 3600.0  # two lanes per approach, veh/h
        ratios = [
            max(p.ns_veh_per_h * p.ns_mult / capacity, 0.05),
            max(p.we_veh_per_h * p.we_mult / capacity, 0.05),
        ]
        total = min(sum(ratios), 0.9)
        lost = float(N_PHASES * p.yellow_s)
        cycle = min((1.5 * lost + 5.0) / (1.0 - total), 150.0)
        floor = float(p.min_green_s)
        return [max((cycle - lost) * r / sum(ratios), floor) for r in ratios]

    def reset(self) -> None:
        super().reset()
        self._plan_phase = 0
        self._elapsed = 0

    def act(self, obs: NDArray[np.float32]) -> Any:  # noqa: ARG002 - a fixed plan is blind
        if self._elapsed >= self.durations[self._plan_phase]:
            self._plan_phase = (self._plan_phase + 1) % N_PHASES
            self._elapsed = 0
        self._elapsed += 1
        return np.int64(self._plan_phase)


class SumoMaxPressure(_SumoPhaseController):
    """Max-pressure (Varaiya 2013) from the observation: serve the phase with most vehicles.

    A phase's pressure is the vehicles on the lanes it serves (the observed densities; the
    outgoing lanes are free-flowing here, so their term is zero). After ``min_green_s`` of green
    (and the signal's own minimum) the controller switches to the phase of highest pressure.
    The default, 5 s, leaves the signal's own minimum (5 s of green after 2 s of yellow) as the
    only limit: it was the best of {5, 10, 15, 20, 30} s in every regime here (SUMO's 2 s
    yellow makes switching cheap, unlike the 5 s lost time of ``society/TrafficSignal-v0``).
    """

    def __init__(self, env: gym.Env[Any, Any], *, min_green_s: float = 5.0) -> None:
        super().__init__(env)
        if min_green_s < 0:
            raise ConfigError(f"SumoMaxPressure: min_green_s={min_green_s} must be >= 0")
        self.min_green_s = min_green_s

    def act(self, obs: NDArray[np.float32]) -> Any:
        phase, in_phase_s = self.observe(obs)
        if not self._switch_allowed(obs, in_phase_s, self.min_green_s):
            return np.int64(phase)
        density = obs[OBS_DENSITY]
        pressures = [float(sum(density[i] for i in lanes)) for lanes in PHASE_LANES]
        best = max(range(N_PHASES), key=lambda k: (pressures[k], k == phase))
        return np.int64(best)


class SumoLongestQueue(_SumoPhaseController):
    """Serve the phase holding the single longest halted queue, after ``min_green_s``.

    Default minimum as for :class:`SumoMaxPressure` (also the best of the same grid).
    """

    def __init__(self, env: gym.Env[Any, Any], *, min_green_s: float = 5.0) -> None:
        super().__init__(env)
        if min_green_s < 0:
            raise ConfigError(f"SumoLongestQueue: min_green_s={min_green_s} must be >= 0")
        self.min_green_s = min_green_s
        self._phase_of = {lane: k for k, lanes in enumerate(PHASE_LANES) for lane in lanes}

    def act(self, obs: NDArray[np.float32]) -> Any:
        phase, in_phase_s = self.observe(obs)
        if not self._switch_allowed(obs, in_phase_s, self.min_green_s):
            return np.int64(phase)
        queue = obs[OBS_QUEUE]
        longest = max(
            range(len(INCOMING_LANES)), key=lambda i: (float(queue[i]), self._phase_of[i] == phase)
        )
        if math.isclose(float(queue[longest]), 0.0):
            return np.int64(phase)  # nobody waits: keep the green where it is
        return np.int64(self._phase_of[longest])
