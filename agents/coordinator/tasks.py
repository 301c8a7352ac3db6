"""Evaluation work on the bus: a task's name, and results to and from their wire form.

The coordinator and ``society evaluator`` both use these, so an evaluation computed on another
machine is the :class:`~agents.coordinator.evaluation.EvaluationResult` the coordinator's own
worker would have returned, field for field.
"""

from __future__ import annotations

import time

from agents.bus.schemas import SCHEMA_VERSION, PolicySnapshot, RegimeOutcome, TaskResult
from agents.coordinator.evaluation import EvaluationResult, RegimeResult

__all__ = ["result_from_wire", "result_to_wire", "task_id"]


def task_id(snapshot: PolicySnapshot) -> str:
    """The work of evaluating ``snapshot``: the same id however often it is handed out.

    One id per (agent, version, life), so whichever evaluator answers first is recorded and
    every later answer is recognised as a duplicate.
    """
    return f"{snapshot.agent}:{snapshot.version}:{snapshot.incarnation:x}"


def result_to_wire(
    result: EvaluationResult, *, task: str, evaluator: str, session: str
) -> TaskResult:
    """``result`` as an evaluator sends it."""
    return TaskResult(
        schema=SCHEMA_VERSION,
        task=task,
        evaluator=evaluator,
        session=session,
        regimes=[
            RegimeOutcome(
                regime=regime.regime,
                returns=list(regime.returns),
                metrics=dict(regime.metrics),
                baseline_returns=regime.baseline_returns,
                baseline_metrics=dict(regime.baseline_metrics),
                random_returns=regime.random_returns,
                recall_returns=regime.recall_returns,
                recall_from=regime.recall_from,
            )
            for regime in result.regimes
        ],
        baseline=result.baseline,
        seconds=result.seconds,
        error_reason=result.error_reason or "",
        error_detail=result.error_detail,
        ts=time.time(),
    )


def result_from_wire(message: TaskResult) -> EvaluationResult:
    """A validated :class:`TaskResult` as the coordinator's own evaluation would be."""
    if message.error_reason:
        return EvaluationResult(
            error_reason=message.error_reason, error_detail=message.error_detail[:500]
        )
    return EvaluationResult(
        regimes=[
            RegimeResult(
                regime=outcome.regime,
                returns=list(outcome.returns),
                metrics=dict(outcome.metrics),
                baseline_returns=outcome.baseline_returns,
                baseline_metrics=dict(outcome.baseline_metrics),
                random_returns=outcome.random_returns,
                recall_returns=outcome.recall_returns,
                recall_from=outcome.recall_from,
            )
            for outcome in message.regimes
        ],
        baseline=message.baseline,
        seconds=message.seconds,
    )
