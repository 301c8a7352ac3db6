"""How much of PPO's clipped gradient its actor gets, world by world.

stable-baselines3's PPO clips the gradient norm of its whole loss (policy, value and entropy
terms together) at ``max_grad_norm``. Where returns are large, the value loss's gradient is
orders of magnitude larger than the policy loss's, and the clip shrinks the actor's gradient
with it. This measures both norms on one rollout after a short run of PPO, for each world in
its default regime with its default reward: the figures in docs/benchmarks.md ("PPO's actor is
held back by its critic's gradient").

    python bench/gradient_norms.py [--worlds society/Thermostat-v0 ...] [--seed 0]
"""

from __future__ import annotations

import argparse

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from torch.nn import functional as F  # noqa: N812 - torch's own convention

from agents.learner.algorithms import silence_logger
from agents.worlds import WORLD_IDS, make_world

ROLLOUT = 2048
"""PPO's rollout: three of them are learned first, the fourth is measured."""


def gradient_norms(env_id: str, seed: int) -> tuple[float, float, float]:
    """(mean return target, policy loss gradient norm, value loss gradient norm)."""
    venv = make_vec_env(lambda: make_world(env_id), n_envs=1, seed=seed)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=ROLLOUT,
        batch_size=64,
        n_epochs=1,
        policy_kwargs={"net_arch": [64, 64]},
        seed=seed,
        verbose=0,
    )
    silence_logger(model)
    model.learn(3 * ROLLOUT)
    model.learn(ROLLOUT, reset_num_timesteps=False)
    data = next(iter(model.rollout_buffer.get(256)))
    actions = data.actions
    if model.action_space.shape == ():  # Discrete: SB3 stores the index as a float column
        actions = actions.long().flatten()
    values, log_prob, _ = model.policy.evaluate_actions(data.observations, actions)
    advantages = (data.advantages - data.advantages.mean()) / (data.advantages.std() + 1e-8)
    ratio = torch.exp(log_prob - data.old_log_prob)
    schedule = model.clip_range  # a schedule once the model is set up: PPO's own clip
    clip = float(schedule(1.0) if callable(schedule) else schedule)
    policy_loss = -torch.min(
        advantages * ratio, advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    ).mean()
    value_loss = model.vf_coef * F.mse_loss(data.returns, values.flatten())
    norms = []
    for loss in (policy_loss, value_loss):
        model.policy.optimizer.zero_grad()
        loss.backward(retain_graph=True)  # type: ignore[no-untyped-call]
        grads = [p.grad for p in model.policy.parameters() if p.grad is not None]
        norms.append(sum(float((g**2).sum()) for g in grads) ** 0.5)
    return float(data.returns.mean()), norms[0], norms[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", nargs="*", choices=WORLD_IDS, default=list(WORLD_IDS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("| world | mean return target | policy loss gradient | value loss gradient |")
    print("|---|---|---|---|")
    for env_id in args.worlds:
        mean_return, policy, value = gradient_norms(env_id, args.seed)
        print(f"| `{env_id}` | {mean_return:.1f} | {policy:.3g} | {value:.3g} |")


if __name__ == "__main__":
    main()
