"""The sharing benchmark's scoring: gains from the evaluations, and every pair's final judged."""

from __future__ import annotations

from typing import Any

from bench import sharing


def _agent(name: str, twin_of: str | None, reached_at: int, final: float) -> dict[str, Any]:
    evaluations = [
        {"version": i, "step": step, "mean_return": 500.0 if step >= reached_at else 100.0,
         "regimes": {}}
        for i, step in enumerate(range(512, 8_193, 512))
    ]  # fmt: skip
    return {
        "id": name,
        "twin_of": twin_of,
        "env_steps": 8_192,
        "evaluations": evaluations,
        "last_eval_return": final,
        "adoptions": 0,
    }


def _summary(*agents: dict[str, Any]) -> dict[str, Any]:
    return {"agents": list(agents), "duration_seconds": 1.0, "evolution_directives": 0}


def test_a_sharing_agent_that_ends_below_its_twin_is_counted_behind() -> None:
    run = sharing.score_run(
        "cartpole-ppo",
        0,
        _summary(
            _agent("a", None, 2_048, 500.0),
            _agent("a-twin", "a", 4_096, 500.0),
            _agent("b", None, 1_024, 420.0),
            _agent("b-twin", "b", 4_096, 500.0),
        ),
    )
    assert run["ratio"] == (4_096 + 4_096) / (2_048 + 1_024)
    assert run["pairs_behind"] == 1
    assert {p["agent"]: p["twin_final"] for p in run["pair_finals"]} == {"a": 500.0, "b": 500.0}
    # The best of each group is level, so only the per-pair check sees agent b behind.
    assert run["best_final_sharing"] == run["best_final_twins"]
    assert sharing._every_pair([run]) == "not met (1 of 2)"


def test_every_pair_is_met_only_when_no_sharing_agent_ends_below_its_twin() -> None:
    run = sharing.score_run(
        "cartpole-ppo",
        0,
        _summary(_agent("a", None, 2_048, 500.0), _agent("a-twin", "a", 4_096, 480.0)),
    )
    assert run["pairs_behind"] == 0
    assert sharing._every_pair([run]) == "met (0 of 1)"
    old = {k: v for k, v in run.items() if k not in ("pairs_behind", "pair_finals")}
    assert sharing._every_pair([run, old]).startswith("not recorded")


def test_a_seed_where_only_twins_got_there_counts_as_the_worst_gain_not_as_missing() -> None:
    never = 10**9  # past the last evaluation: never at the threshold
    twins_only = sharing.score_run(
        "cartpole-ppo",
        0,
        _summary(_agent("a", None, never, 100.0), _agent("a-twin", "a", 4_096, 500.0)),
    )
    nobody = sharing.score_run(
        "cartpole-ppo",
        1,
        _summary(_agent("a", None, never, 100.0), _agent("a-twin", "a", never, 100.0)),
    )
    fast = sharing.score_run(
        "cartpole-ppo",
        2,
        _summary(_agent("a", None, 2_048, 500.0), _agent("a-twin", "a", 4_096, 500.0)),
    )
    assert twins_only["ratio"] is None
    assert sharing.only_twins_reached(twins_only)
    assert not sharing.only_twins_reached(nobody)
    assert not sharing.only_twins_reached(fast)
    # Counted as 0 the bad seed pulls the median down from 2.0 to 1.0; nobody's seed is left out.
    assert sharing.median_gain([fast, twins_only, nobody]) == 1.0
    assert sharing.median_gain([fast, nobody]) == 2.0
