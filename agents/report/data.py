"""Reading a run folder into plain, typed records for the report.

A run folder is what ``society run`` leaves behind: ``summary.json`` (per agent: evaluations
with per-regime scores, the baseline's, the lifelong report; the sharing gain; the lineage)
and ``coordinator/history.sqlite`` (time series: telemetry, bus health, snapshots with their
lineage, directives). A coordinator's own data folder (``history.sqlite`` next to
``coordinator.json``) is read the same way, so a report can be made for a society that was not
started by ``society run``.

Everything here is read defensively: the files may come from an older build, an interrupted
run or a hand edit, so a missing table, key or number leaves that part of the report empty
instead of failing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.bus.codec import decode_as
from agents.bus.schemas import Evaluation
from agents.coordinator.history import HistoryReader
from agents.exceptions import ConfigError, SocietyError
from agents.report.records import (
    Adoption,
    AgentData,
    Block,
    EvalRecord,
    HealthSample,
    RegimeResult,
    RunData,
    TrainingSample,
)
from agents.report.values import as_float, as_int, as_list, as_mapping, as_str

__all__ = ["load_run"]


def load_run(folder: Path) -> RunData:
    """Read a run folder. Raises :class:`ConfigError` if ``folder`` is not one."""
    summary_path, history_path = _locate(folder)
    summary = _read_summary(summary_path) if summary_path is not None else {}
    history = HistoryReader(history_path)
    agents = _agents(summary, history)
    adoptions = _adoptions(summary, history)
    return RunData(
        folder=folder,
        summary=summary,
        agents=agents,
        adoptions=adoptions,
        health=tuple(HealthSample(*sample) for sample in history.bus_health()),
        directives=history.directive_counts(),
        sharing=as_mapping(summary.get("sharing")),
        has_history=history.readable,
    )


def _locate(folder: Path) -> tuple[Path | None, Path | None]:
    """``summary.json`` (or a coordinator's ``coordinator.json``) and ``history.sqlite``."""
    if not folder.is_dir():
        msg = f"not a run folder: {str(folder)!r} is not a directory"
        raise ConfigError(msg)
    candidates = [
        (folder / "summary.json", folder / "coordinator" / "history.sqlite"),
        (folder / "coordinator" / "coordinator.json", folder / "coordinator" / "history.sqlite"),
        (folder / "coordinator.json", folder / "history.sqlite"),
    ]
    for summary, history in candidates:
        if summary.is_file() or history.is_file():
            return (
                summary if summary.is_file() else None,
                history if history.is_file() else None,
            )
    msg = f"not a run folder: {str(folder)!r} has no summary.json or coordinator/history.sqlite"
    raise ConfigError(msg)


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        msg = f"cannot read {str(path)!r}: {exc}"
        raise ConfigError(msg) from None
    if not isinstance(data, dict):
        msg = f"{str(path)!r} is not a JSON object"
        raise ConfigError(msg)
    return data


# --- the summary's agents -------------------------------------------------------------------


def _agents(summary: Mapping[str, Any], history: HistoryReader) -> tuple[AgentData, ...]:
    entries = [
        e for e in as_list(summary.get("agents")) if isinstance(e, dict) and as_str(e.get("id"))
    ]
    by_id = {as_str(e["id"]): e for e in entries}
    fallback = _history_evaluations(history)
    training = _history_training(history)
    episodes: dict[str, list[tuple[int, str]]] = {}
    for agent, step, regime in history.episodes():
        episodes.setdefault(agent, []).append((step, regime))
    ids = list(by_id)
    ids += [a for a in sorted({*fallback, *training, *episodes}) if a not in by_id]
    agents = []
    for agent_id in ids:
        entry = by_id.get(agent_id, {})
        evaluations = [
            record
            for e in as_list(entry.get("evaluations"))
            if (record := _evaluation(e)) is not None
        ] or fallback.get(agent_id, [])
        lifelong = as_mapping(entry.get("lifelong"))
        regret = as_mapping(entry.get("regret")) or {}
        agents.append(
            AgentData(
                id=agent_id,
                env=as_str(entry.get("env")),
                algo=as_str(entry.get("algo")),
                strategy=as_str(entry.get("strategy")),
                twin_of=as_str(entry.get("twin_of")),
                env_steps=as_int(entry.get("env_steps")) or 0,
                episodes=as_int(entry.get("episodes")) or 0,
                drift_events=as_int(entry.get("drift_events")) or 0,
                adaptations=as_int(entry.get("adaptations")) or 0,
                adoptions=as_int(entry.get("adoptions")) or 0,
                learns_from=tuple(as_str(peer) for peer in as_list(entry.get("learns_from"))),
                federated_rounds=as_int(entry.get("federated_rounds")) or 0,
                group=as_str(entry.get("group")) or agent_id,
                best_eval_return=as_float(entry.get("best_eval_return")),
                last_eval_return=as_float(entry.get("last_eval_return")),
                last_eval_with_recall=as_float(entry.get("last_eval_with_recall")),
                baseline=as_str(entry.get("baseline")),
                baseline_eval_return=as_float(entry.get("baseline_eval_return")),
                regret=as_float(regret.get("total")),
                regret_ratio=as_float(regret.get("relative")),
                evaluations=tuple(sorted(evaluations, key=lambda e: (e.step, e.version))),
                blocks=_blocks(lifelong) or _blocks_from_episodes(episodes.get(agent_id, [])),
                training=tuple(training.get(agent_id, ())),
                lifelong=lifelong,
            )
        )
    return tuple(agents)


def _evaluation(entry: object) -> EvalRecord | None:
    if not isinstance(entry, dict):
        return None
    step, mean = as_int(entry.get("step")), as_float(entry.get("mean_return"))
    if step is None or mean is None:
        return None
    regimes = {}
    for name, score in (as_mapping(entry.get("regimes")) or {}).items():
        if not isinstance(score, dict) or (value := as_float(score.get("mean_return"))) is None:
            continue
        regimes[str(name)] = RegimeResult(
            mean_return=value,
            baseline_return=as_float(score.get("baseline_return")),
            random_return=as_float(score.get("random_return")),
            recall_return=as_float(score.get("recall_return")),
        )
    return EvalRecord(
        version=as_int(entry.get("version")) or 0,
        step=step,
        mean_return=mean,
        baseline_return=as_float(entry.get("baseline_return")),
        train_regime=as_str(entry.get("train_regime")),
        regimes=regimes,
    )


def _blocks_from_episodes(episodes: list[tuple[int, str]]) -> tuple[Block, ...]:
    """Regime blocks as the lifelong metrics find them: runs of episodes in one regime."""
    blocks: list[Block] = []
    for step, regime in sorted(episodes, key=lambda e: e[0]):
        if not regime:
            continue
        if blocks and blocks[-1].regime == regime:
            blocks[-1] = Block(regime, blocks[-1].start_step, step)
        else:
            blocks.append(Block(regime, blocks[-1].end_step if blocks else 0, step))
    return tuple(blocks)


def _blocks(lifelong: Mapping[str, Any] | None) -> tuple[Block, ...]:
    blocks = []
    for entry in as_list((lifelong or {}).get("blocks")):
        if not isinstance(entry, dict):
            continue
        start, end = as_int(entry.get("start_step")), as_int(entry.get("end_step"))
        if start is not None and end is not None:
            blocks.append(Block(as_str(entry.get("regime")), start, end))
    return tuple(blocks)


def _adoptions(summary: Mapping[str, Any], history: HistoryReader) -> tuple[Adoption, ...]:
    """The summary's lineage table; the history's snapshots when the summary has none."""
    adoptions = []
    for entry in as_list(summary.get("lineage")):
        if not isinstance(entry, dict):
            continue
        agent, source = as_str(entry.get("agent")), as_str(entry.get("from_agent"))
        if agent and source:
            adoptions.append(
                Adoption(
                    agent=agent,
                    version=as_int(entry.get("version")) or 0,
                    step=as_int(entry.get("step")) or 0,
                    from_agent=source,
                    from_version=as_int(entry.get("from_version")) or 0,
                )
            )
    return tuple(adoptions) if adoptions else tuple(Adoption(*a) for a in history.adoptions())


# --- the history's time series --------------------------------------------------------------


def _history_evaluations(history: HistoryReader) -> dict[str, list[EvalRecord]]:
    """Evaluations from the history, for agents the summary does not cover."""
    table: dict[str, list[EvalRecord]] = {}
    for agent, version, step, mean, message in history.evaluations():
        record = _evaluation_message(message)
        if record is None and (value := as_float(mean)) is not None:
            record = EvalRecord(int(version), int(step), value)
        if record is not None:
            table.setdefault(str(agent), []).append(record)
    return table


def _history_training(history: HistoryReader) -> dict[str, list[TrainingSample]]:
    table: dict[str, list[TrainingSample]] = {}
    for agent, steps, mean in history.training():
        if (value := as_float(mean)) is not None:
            table.setdefault(agent, []).append(TrainingSample(steps, value))
    return table


def _evaluation_message(blob: object) -> EvalRecord | None:
    """An evaluation kept whole in the history, checked like anything read from outside."""
    if not isinstance(blob, bytes):
        return None
    try:
        message = decode_as(Evaluation, blob)
    except SocietyError:
        return None
    return EvalRecord(
        version=message.version,
        step=message.step,
        mean_return=message.mean_return,
        baseline_return=message.baseline_return,
        train_regime=message.train_regime,
        regimes={
            score.regime: RegimeResult(
                score.mean_return, score.baseline_return, score.random_return, score.recall_return
            )
            for score in message.regimes
        },
    )
