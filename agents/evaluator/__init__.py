"""``society evaluator``: evaluates the snapshots a coordinator hands it over the bus."""

from __future__ import annotations

from agents.evaluator.evaluator import Evaluator, EvaluatorConfig, EvaluatorReport

__all__ = ["Evaluator", "EvaluatorConfig", "EvaluatorReport"]
