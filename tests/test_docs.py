"""The docs describe the code that exists: every message field, every metric, every flag."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from agents.bus import arrays, schemas
from agents.bus.codec import MESSAGE_TYPES, REJECT_REASONS

ROOT = Path(__file__).parents[1]
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()

STRUCTS: list[type[msgspec.Struct]] = [
    *MESSAGE_TYPES.values(),
    schemas.SpaceSpec,
    schemas.PolicyArch,
    schemas.Lineage,
    schemas.RegimeScore,
    schemas.RegimeOutcome,
    schemas.RegimeSpec,
    schemas.LibraryPolicy,
    schemas.LeaderboardEntry,
    schemas.RolloutColumns,
    arrays.Array,
    arrays.Tensor,
]


def section(name: str) -> str:
    match = re.search(rf"^### `{name}`\n(.*?)(?=^#{{2,3}} |\Z)", PROTOCOL, re.DOTALL | re.MULTILINE)
    assert match, f"docs/protocol.md has no section for {name}"
    return match.group(1)


@pytest.mark.parametrize("struct", STRUCTS, ids=lambda s: s.__name__)
def test_every_field_is_documented(struct: type[msgspec.Struct]) -> None:
    text = section(struct.__name__)
    documented = re.findall(r"^\| `(\w+)` \|", text, re.MULTILINE)
    fields = [f.name for f in msgspec.structs.fields(struct) if f.name != "schema"]
    assert documented == fields, "fields must be documented in encoding order"


def test_every_kind_tag_is_documented() -> None:
    for message_type in MESSAGE_TYPES.values():
        tag = message_type.__struct_config__.tag
        assert f'`kind = "{tag}"`' in PROTOCOL


def test_every_reject_reason_is_documented() -> None:
    for reason in REJECT_REASONS:
        assert f"| `{reason}` |" in PROTOCOL, reason


def test_every_exported_metric_is_documented() -> None:
    from prometheus_client import CollectorRegistry

    from agents.bus.memory import MemoryBroker
    from agents.coordinator.coordinator import Coordinator, CoordinatorConfig

    registry = CollectorRegistry()
    Coordinator(CoordinatorConfig(society="s"), MemoryBroker(), metrics_registry=registry)
    metrics_md = (ROOT / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(society_\w+)` \|", metrics_md, re.MULTILINE))
    exported = set()
    for family in registry.collect():
        exported.add(f"{family.name}_total" if family.type == "counter" else family.name)
    assert exported == documented


def test_the_scenario_example_in_the_docs_is_valid(tmp_path: Path) -> None:
    from agents.learner.envs import DriftPlan, make_env
    from agents.scenarios import load_scenario

    text = (ROOT / "docs" / "scenarios.md").read_text()
    example = re.search(r"```toml\n(.*?)```", text, re.DOTALL)
    assert example
    path = tmp_path / "example.toml"
    path.write_text(example.group(1))
    scenario = load_scenario(str(path))
    assert scenario.drift is not None
    plan = DriftPlan(tuple(scenario.drift.phases), regimes=scenario.drift.regimes)
    plan.specs(scenario.world.env)
    # The regime defined in the example is a real one of the world.
    custom = DriftPlan((("mild", 1),), regimes=scenario.drift.regimes)
    make_env(scenario.world.env, drift=custom).reset(seed=0)


def test_every_builtin_scenario_is_in_the_docs() -> None:
    from agents.scenarios import builtin_scenarios

    text = (ROOT / "docs" / "scenarios.md").read_text()
    for name in builtin_scenarios():
        assert f"| `{name}` |" in text, name
