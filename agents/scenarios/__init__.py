"""Scenarios: small declarative TOML files describing a society to run.

A scenario names the world, the learner (algorithm, hyperparameters, policy network), the
society's size and per-agent step budget, and how the coordinator evaluates. The built-in
ones live next to this module; ``society run --config FILE`` takes a user's own.
"""

from __future__ import annotations

from agents.scenarios.scenario import (
    DriftSection,
    EvaluationSection,
    LearnerSection,
    PolicySection,
    Scenario,
    SocietySection,
    WorldSection,
    builtin_scenarios,
    load_scenario,
)

__all__ = [
    "DriftSection",
    "EvaluationSection",
    "LearnerSection",
    "PolicySection",
    "Scenario",
    "SocietySection",
    "WorldSection",
    "builtin_scenarios",
    "load_scenario",
]
