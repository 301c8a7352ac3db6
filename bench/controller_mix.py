"""Starting from two of the device's controllers at once: can a learner pick, state by state?

A negative result kept runnable (issue 15, docs/benchmarks.md). On the home battery the
time-of-use mode beats self-consumption in winter on most devices and loses in summer with
dynamic prices, so a learner that knew when each pays would be ahead of the controller. Each
run records a history of ``--history`` device steps that alternates the world's controllers day
by day (the agent's own device, as ``society run`` draws it for member ``seed``, through the
scenario's drift), fits the learner to it in one of two ways, and evaluates the result as the
coordinator does:

- ``awr``: advantage-weighted regression (Peng et al., "Advantage-Weighted Regression", 2019)
  on the PPO policy: the value function fitted to the history's returns as
  :func:`agents.learner.pretrain.pretrain` fits it, then the imitation weighted by
  ``exp(advantage / (beta * std))`` (clipped at 20), so that an action which did better than
  the state's average counts more;
- ``dqfd``: the history in a DQN's replay buffer and its Q-network pre-trained as DQfD does
  (:func:`agents.learner.pretrain.pretrain` with ``--margin``; 0 is plain fitted Q iteration).

    python bench/controller_mix.py [--world home-battery] [--seeds 0 1]
        [--controllers self_consumption tou] [--methods awr dqfd] [--margin 1.0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, write_result
from bench.regret import evaluate_state, scenario_learner

EPOCHS = 100
BATCH = 256


def mixed_history(learner: Any, names: list[str], steps: int, seed: int) -> tuple[Any, Any]:
    """The device driven by each controller in turn, an episode each; and who drove each step."""
    import numpy as np

    from agents.learner.experience import ExperienceColumns
    from agents.learner.pretrain import ControllerHistory
    from agents.worlds.baselines import make_baseline
    from agents.worlds.shadow import unjudged

    env = learner.env
    controllers = [make_baseline(learner.config.env_id, name, env) for name in names]
    parts: list[Any] = []
    drivers: list[Any] = []
    returns: list[float] = []
    recorded = 0
    with unjudged(env):
        while recorded < steps:
            which = len(parts) % len(controllers)
            episode = _one_episode(env, controllers[which], seed if not parts else None)
            parts.append(episode.columns)
            drivers.append(np.full(len(episode), which))
            returns.extend(episode.episode_returns)
            recorded += len(episode)
    history = ControllerHistory(ExperienceColumns.concatenate(parts), tuple(returns))
    return history, np.concatenate(drivers)


def _one_episode(env: Any, controller: Any, seed: int | None) -> Any:
    """One whole episode of ``controller``: the society's worlds say how long theirs are."""
    from agents.learner.pretrain import record_controller

    return record_controller(env, controller, int(env.unwrapped.episode_steps), seed=seed)


def advantage_weighted(learner: Any, history: Any, beta: float, seed: int) -> None:
    """Fit value and policy as pretrain does, then re-fit the policy weighted by advantage."""
    import numpy as np
    import torch
    from torch.nn import functional as F  # noqa: N812 - torch's own convention

    from agents.learner.pretrain import _action_tensor, _value_targets, pretrain

    pretrain(learner.model, history, seed=seed)  # the value function (and a plain clone)
    policy = learner.model.policy
    columns = history.columns
    obs = torch.as_tensor(np.asarray(columns.obs, dtype=np.float32))
    next_obs = torch.as_tensor(np.asarray(columns.next_obs, dtype=np.float32))
    actions = _action_tensor(policy.action_space, columns.actions)
    targets = _value_targets(policy, columns, next_obs, float(learner.model.gamma))
    with torch.no_grad():
        advantage = targets - policy.predict_values(obs).flatten()
        weights = torch.clamp(torch.exp(advantage / (beta * advantage.std())), max=20.0)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    generator = np.random.default_rng(seed)
    policy.set_training_mode(True)
    for _ in range(EPOCHS // 3):
        order = generator.permutation(len(columns))
        for start in range(0, len(columns), BATCH):
            idx = torch.as_tensor(order[start : start + BATCH])
            log_prob = policy.get_distribution(obs[idx]).log_prob(actions[idx])
            values = policy.predict_values(obs[idx]).flatten()
            loss = -(weights[idx] * log_prob).mean() + F.mse_loss(values, targets[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    policy.set_training_mode(False)


def one_run(
    world: str, seed: int, names: list[str], method: str, *, history_steps: int, margin: float
) -> dict[str, Any]:
    import numpy as np
    import torch

    from agents.learner.learner import PolicyState
    from agents.learner.pretrain import pretrain

    learner, _events, config = scenario_learner(
        world, seed, history_steps, algo="dqn" if method == "dqfd" else None
    )
    try:
        history, drivers = mixed_history(learner, names, history_steps, seed)
        obs = torch.as_tensor(np.asarray(history.columns.obs, dtype=np.float32))
        if method == "awr":
            advantage_weighted(learner, history, beta=1.0, seed=seed)
            with torch.no_grad():
                chosen = learner.model.policy.get_distribution(obs).mode().numpy()
        else:
            pretrain(learner.model, history, margin=margin, seed=seed)
            with torch.no_grad():
                chosen = learner.model.q_net(obs).argmax(dim=1).numpy()
        taken = np.asarray(history.columns.actions).reshape(-1)
        agreement = {
            name: float((chosen == taken)[drivers == i].mean()) for i, name in enumerate(names)
        }
        state = PolicyState(
            tensors=learner.current_tensors(), step=len(history), regime="", lineage=None,
            hyperparams={}, library=[],
        )  # fmt: skip
        result = evaluate_state(learner, state, config)
    finally:
        learner.close()
    return {
        "world": world,
        "seed": seed,
        "method": method,
        "margin": margin if method == "dqfd" else None,
        "controllers": names,
        "agreement_with_each": agreement,
        "against_primary": {
            regime: (v["mean"] - v["baseline"]) / abs(v["baseline"]) for regime, v in result.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="home-battery")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--controllers", nargs="+", default=["self_consumption", "tou"])
    parser.add_argument("--methods", nargs="+", choices=["awr", "dqfd"], default=["awr", "dqfd"])
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--history", type=int, default=20_000)
    args = parser.parse_args()
    started = time.perf_counter()
    runs = []
    for method in args.methods:
        for seed in args.seeds:
            run = one_run(
                args.world, seed, args.controllers, method,
                history_steps=args.history, margin=args.margin,
            )  # fmt: skip
            print(json.dumps(run), flush=True)
            runs.append(run)
    write_result(
        "controller_mix",
        {
            "machine": machine(),
            "command": "python bench/controller_mix.py " + " ".join(sys.argv[1:]),
            "seconds": round(time.perf_counter() - started, 1),
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
