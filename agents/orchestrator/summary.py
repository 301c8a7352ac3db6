"""``summary.json``: the run in one file, from each process's own account.

Per agent, the counts come from the agent's ``final.json`` (what it did and what the broker
acknowledged) and the evaluations from the coordinator's ``coordinator.json`` (what it
measured). Neither side is asked to report on the other.

The run is read through :class:`RunState` (the orchestrator has it), so this module does not
import the orchestrator that calls it.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agents.coordinator.sharing import describe
from agents.regret import Regret

if TYPE_CHECKING:
    from agents.broker.managed import ManagedBroker
    from agents.bus.url import BrokerUrl
    from agents.orchestrator.plan import AgentPlan, RunPlan
    from agents.orchestrator.processes import Child

__all__ = ["RunState", "build_summary", "read_json"]


class RunState(Protocol):
    """What the summary reads of a run that has stopped."""

    @property
    def plan(self) -> RunPlan: ...
    @property
    def agents(self) -> Mapping[str, Child]: ...
    @property
    def coordinator(self) -> Child | None: ...
    @property
    def broker(self) -> ManagedBroker | None: ...
    @property
    def broker_url(self) -> BrokerUrl | None: ...
    @property
    def metrics_port(self) -> int: ...
    @property
    def started_at(self) -> float: ...
    @property
    def pending_evaluations(self) -> list[tuple[str, int]]: ...


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` if it is missing, unreadable or not an object."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return None


def build_summary(run: RunState, *, status: str, reason: str | None) -> dict[str, Any]:
    plan = run.plan
    coordinator = read_json(plan.out_dir / "coordinator" / "coordinator.json") or {}
    evaluated = {entry["id"]: entry for entry in coordinator.get("agents", [])}
    agents = [
        _agent_entry(
            agent.id,
            read_json(plan.out_dir / "agents" / agent.id / "final.json") or {},
            evaluated.get(agent.id, {}),
            agent,
            run.agents.get(agent.id),
        )
        for agent in plan.agents
    ]
    # Agents started by hand that joined the society (`society run --broker ...`): what the
    # coordinator knows of them, marked as joined.
    planned = {agent.id for agent in plan.agents}
    agents += [
        _agent_entry(agent_id, {}, seen, None, None)
        for agent_id, seen in evaluated.items()
        if agent_id not in planned
    ]
    return {
        "status": status,
        "reason": reason,
        "society": plan.society,
        "scenario": plan.scenario.name,
        "steps_per_agent": plan.steps,
        "broker": {
            "url": str(run.broker_url) if run.broker_url else None,
            "managed": run.broker.kind if run.broker is not None else None,
        },
        "metrics_port": run.metrics_port,
        "started_at": run.started_at,
        "finished_at": time.time(),
        "duration_seconds": round(time.time() - run.started_at, 2),
        "agents": agents,
        "groups": coordinator.get("groups", [[a["id"]] for a in agents]),
        "sharing": coordinator.get("sharing"),
        "lineage": coordinator.get("lineage", []),
        "evolution_directives": coordinator.get("evolution_directives", 0),
        # The agents' last snapshots not evaluated when the final wait (--eval-timeout) ended.
        "evaluations_pending": [
            {"agent": agent, "version": version} for agent, version in run.pending_evaluations
        ],
        "coordinator": {
            "snapshots_evaluated": coordinator.get("snapshots_evaluated", 0),
            "evaluation_failures": coordinator.get("evaluation_failures", 0),
            "messages_received": coordinator.get("messages_received", 0),
            "messages_received_by_kind": coordinator.get("messages_received_by_kind", {}),
            "messages_rejected": coordinator.get("messages_rejected", 0),
            "messages_rejected_by_reason": coordinator.get("messages_rejected_by_reason", {}),
            "messages_duplicate_by_kind": coordinator.get("messages_duplicate_by_kind", {}),
            "exit_code": run.coordinator.returncode if run.coordinator is not None else None,
        },
    }


def _agent_entry(
    agent_id: str,
    own: Mapping[str, Any],
    seen: Mapping[str, Any],
    planned: AgentPlan | None,
    child: Child | None,
) -> dict[str, Any]:
    """One agent in ``summary.json``: its own final report, and what the coordinator saw.

    ``planned`` is ``None`` for an agent that was not started by the run but joined it.
    """
    return {
        "id": agent_id,
        "joined": planned is None,
        "env": own.get("env", planned.env_id if planned else seen.get("env_id", "")),
        "algo": own.get("algo", planned.algo if planned else seen.get("algo", "")),
        "seed": planned.seed if planned else None,
        "env_steps": own.get("env_steps", seen.get("env_steps", 0)),
        "episodes": own.get("episodes", seen.get("episodes", 0)),
        # Episodes of steps learned again after a resume from an older checkpoint.
        "episodes_relearned": seen.get("episodes_relearned", 0),
        "experience_batches_published": own.get(
            "experience_batches_published", seen.get("experience_batches_published", 0)
        ),
        "snapshots_published": own.get("snapshots_published", seen.get("snapshots_published", 0)),
        "last_snapshot_version": own.get(
            "last_snapshot_version", seen.get("latest_snapshot_version", 0)
        ),
        "steps_per_second": own.get("steps_per_second", seen.get("steps_per_second", 0.0)),
        "outbox_pending": own.get("outbox_pending", 0),
        "best_eval_return": seen.get("best_eval_return"),
        "last_eval_return": seen.get("last_eval_return"),
        "last_eval_with_recall": seen.get("last_eval_with_recall"),
        "baseline": seen.get("baseline", ""),
        "baseline_eval_return": seen.get("baseline_eval_return"),
        "strategy": own.get("strategy", seen.get("strategy", "")),
        "drift_events": own.get("drift_events", seen.get("drift_events", 0)),
        "adaptations": own.get("adaptations", seen.get("adaptations", 0)),
        "adaptation_steps": own.get("adaptation_steps", 0),
        "lifelong": seen.get("lifelong"),
        "device_index": planned.device_index if planned else None,
        "twin_of": planned.twin_of if planned else seen.get("twin_of", ""),
        "shares": seen.get("shares", []),
        "adoptions": seen.get("adoptions", 0),
        "peer_transitions": seen.get("peer_transitions", 0),
        "learns_from": seen.get("learns_from", []),
        "federated_rounds": own.get("federated_rounds", seen.get("federated_rounds", 0)),
        # Peers' weights left out of a round (did not fit), not kept at all (another network,
        # an unlike device), and experience refused as unlike or as unfit: the agent's own counts.
        "weights_unfit": own.get("weights_unfit", 0),
        "weights_ignored": own.get("weights_ignored", 0),
        "experience_unlike": own.get("experience_unlike", 0),
        "experience_unfit": own.get("experience_unfit", 0),
        "pooled_updates": own.get("pooled_updates", 0),
        "pooled_peer_steps": own.get("pooled_peer_steps", 0),
        "pooled_wait_seconds": own.get("pooled_wait_seconds", 0.0),
        "group": seen.get("group", agent_id),
        # The agent's own count is exact; the coordinator's is its latest telemetry.
        "regret": Regret.from_counters(own).as_dict() if own else seen.get("regret"),
        "experience_batches_received": seen.get("experience_batches_received", 0),
        "snapshots_evaluated": seen.get("snapshots_evaluated", 0),
        "evaluations": seen.get("evaluations", []),
        "exit_code": child.returncode if child is not None else None,
    }


def result_line(summary: Mapping[str, Any], path: Path) -> str:
    """The completed run's one line: where every agent ended against its baseline controller.

    An agent's end is its last evaluation as it would act with its library (``with recall``):
    across a drifting world's regimes that is what it is worth, where one network could not
    serve them all. The baseline's is on the same worlds.
    """
    agents = summary["agents"]
    steps = sum(a["env_steps"] for a in agents)
    head = f"society run completed: {len(agents)} agent{'s' * (len(agents) != 1)}, {steps:,} steps"
    ends = [
        (float(a["last_eval_with_recall"]), a.get("baseline_eval_return"), a.get("baseline", ""))
        for a in agents
        if a.get("last_eval_with_recall") is not None
    ]
    pending = summary.get("evaluations_pending") or []
    behind = f"; {len(pending)} last snapshots not evaluated in time" if pending else ""
    if not ends:
        return f"{head}, no evaluation{behind}; summary in {path}"
    values = sorted(end for end, _, _ in ends)
    spread = f"{statistics.median(values):.1f}" + (
        f" ({values[0]:.1f} to {values[-1]:.1f})" if len(values) > 1 else ""
    )
    compared = [(end, float(base)) for end, base, _ in ends if base is not None]
    against = ""
    if compared:
        names = sorted({name for _, base, name in ends if base is not None and name})
        ahead = sum(end > base for end, base in compared)
        level = sum(math.isclose(end, base, rel_tol=1e-9) for end, base in compared)
        against = (
            f" against {'/'.join(names) or 'the baseline'} "
            f"{statistics.median(sorted(base for _, base in compared)):.1f}; "
            f"{ahead} of {len(compared)} agents ahead" + (f", {level} level" if level else "")
        )
    # A run without twins still has a sharing section, with no pairs: nothing to say of it.
    sharing = summary.get("sharing")
    gain = describe(sharing, ended=True) if sharing and sharing.get("pairs") else ""
    return (
        f"{head}; final evaluation {spread}{against}{_per_regime(agents)}{behind}; "
        f"{gain + '; ' if gain else ''}summary in {path}"
    )


def _per_regime(agents: Sequence[Mapping[str, Any]]) -> str:
    """The last evaluation per regime, median over agents, beside the baseline's ("" if one).

    Per regime, what the agent achieves with its library where it has one, as in the mean.
    """
    values: dict[str, list[float]] = {}
    baselines: dict[str, list[float]] = {}
    for agent in agents:
        evaluations = agent.get("evaluations") or []
        if not evaluations:
            continue
        for regime, score in evaluations[-1].get("regimes", {}).items():
            recall = score.get("recall_return")
            values.setdefault(regime, []).append(
                float(score["mean_return"] if recall is None else recall)
            )
            if score.get("baseline_return") is not None:
                baselines.setdefault(regime, []).append(float(score["baseline_return"]))
    if len(values) < 2:  # noqa: PLR2004 - one regime: the mean says it all
        return ""
    parts = [
        f"{regime} {statistics.median(found):.1f}"
        + (f" vs {statistics.median(baselines[regime]):.1f}" if regime in baselines else "")
        for regime, found in values.items()
    ]
    return "; per regime " + ", ".join(parts)
