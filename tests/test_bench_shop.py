"""The shop benchmark's library: the shop's controllers cloned, as the scenario's agent has them."""

from __future__ import annotations

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from agents.worlds import SHOP_ID, make_baseline, make_world
from bench.worlds_bench import controller_clones


def test_the_library_holds_a_clone_of_each_shop_controller_and_the_rules_acts_as_the_rule() -> None:
    venv = make_vec_env(lambda: make_world(SHOP_ID), n_envs=1, seed=0)
    model = PPO("MlpPolicy", venv, seed=0, n_steps=64, policy_kwargs={"net_arch": [64, 64]})

    clones, agreement = controller_clones(SHOP_ID, model, seed=0, history=(("regular", 1_008),))

    assert [label for label, _ in clones] == [
        "clone:fixed_markup",
        "clone:popularity",
        "clone:linucb",
        "clone:thompson",
    ]
    assert set(agreement) == {"fixed_markup", "popularity", "linucb", "thompson"}
    # On a week it was not fitted to, the rule's clone prices as the rule does.
    model.policy.load_state_dict(clones[0][1])
    env = make_world(SHOP_ID, regime="regular")
    rule = make_baseline(SHOP_ID, "fixed_markup", env)
    obs, _ = env.reset(seed=4_242)
    rule.reset()
    same = 0
    for _ in range(168):
        action = rule.act(obs)
        cloned, _ = model.predict(obs, deterministic=True)
        same += int(np.array_equal(np.asarray(action), cloned))
        obs, *_ = env.step(action)
    assert same / 168 > 0.9
