"""The learner's counters reach telemetry and the final report by name, and only those."""

from __future__ import annotations

from agents.agent.agent import AgentReport
from agents.bus.schemas import Telemetry
from agents.learner.stats import LearnerStats


def test_telemetry_and_the_report_take_the_counters_they_have_fields_for() -> None:
    stats = LearnerStats(episodes=7, context=3, drift_events=2, adaptations=1, false_alarms=4,
                         adaptation_steps=90, adoptions=5, adoptions_declined=6,
                         peer_transitions=300, own_transitions=400, regret=-2.5,
                         regret_baseline_return=-40.0, regret_episodes=8,
                         controller_steps=960, imagined_steps=1024, planned_days=12,
                         experience_unfit=9, shield_interventions=11)  # fmt: skip
    regret = {"regret": -2.5, "regret_baseline_return": -40.0, "regret_episodes": 8,
              "controller_steps": 960}  # fmt: skip
    assert stats.counters(Telemetry.__struct_fields__) == {
        "episodes": 7, "context": 3, "drift_events": 2, "adaptations": 1, "peer_transitions": 300,
        **regret,
    }  # fmt: skip
    assert stats.counters(AgentReport.__dataclass_fields__) == {
        "episodes": 7, "context": 3, "drift_events": 2, "adaptations": 1, "adaptation_steps": 90,
        "adoptions": 5, "adoptions_declined": 6, "imagined_steps": 1024, "planned_days": 12,
        "experience_unfit": 9, "shield_interventions": 11, **regret,
    }  # fmt: skip
