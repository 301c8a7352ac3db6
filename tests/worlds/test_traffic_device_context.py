"""An intersection that shows its own device parameters: the context, and nothing else, added."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from agents.exceptions import ConfigError
from agents.worlds import BASELINES, TRAFFIC_ID, device_params, run_controller
from agents.worlds.traffic import DEVICE_RANGES, TrafficSignal, device_context


def _rollout(env: TrafficSignal, steps: int = 200) -> list[np.ndarray]:
    obs, _ = env.reset(seed=3)
    seen = [obs]
    for t in range(steps):
        obs, *_ = env.step(np.int64(t // 20 % env.n_phases))
        seen.append(obs)
    return seen


def test_the_context_is_the_device_parameters_scaled_to_their_drawn_range() -> None:
    params = device_params(TRAFFIC_ID, seed=5, index=2)
    plain = TrafficSignal(**params)
    shown = TrafficSignal(**params, observe_device=True)
    assert shown.obs_dim == plain.obs_dim + len(DEVICE_RANGES)
    assert shown.observation_space.shape == (shown.obs_dim,)
    context = np.array(device_context(shown.base_params), dtype=np.float32)
    # Drawn devices map into [-1, 1]; the defaults (the middle of each range) near 0.
    assert np.all(np.abs(context) <= 1.0)
    assert np.allclose(device_context(TrafficSignal().base_params), 0.0, atol=1e-6)
    for a, b in zip(_rollout(plain), _rollout(shown), strict=True):
        assert np.array_equal(b[: a.shape[0]], a)  # the dynamics and the rest of the obs unchanged
        assert np.array_equal(b[a.shape[0] :], context)
    check_env(shown, skip_render_check=True)


def test_two_intersections_show_different_contexts_and_a_regime_changes_none() -> None:
    first = TrafficSignal(**device_params(TRAFFIC_ID, seed=5, index=0), observe_device=True)
    second = TrafficSignal(**device_params(TRAFFIC_ID, seed=5, index=1), observe_device=True)
    n = len(DEVICE_RANGES)
    before = first.reset(seed=0)[0][-n:]
    assert not np.array_equal(before, second.reset(seed=0)[0][-n:])
    first.set_regime("event")  # a drift: demand changes, the device parameters do not
    assert np.array_equal(first.reset(seed=0)[0][-n:], before)
    with pytest.raises(ConfigError, match="observe_device"):
        first.apply_regime({"observe_device": False})


def test_the_controllers_drive_as_before_with_the_context() -> None:
    for name, factory in BASELINES[TRAFFIC_ID].items():
        plain = run_controller(factory, TRAFFIC_ID, seeds=(1, 2))
        shown = run_controller(
            factory, TRAFFIC_ID, seeds=(1, 2), env_kwargs={"observe_device": True}
        )
        assert shown.returns == plain.returns, name
