"""Local checkpoints, written atomically, read back only by the process that wrote them.

A checkpoint is a folder holding the SB3 model file (weights and optimizer state), for
off-policy learners the replay buffer, and ``checkpoint.json`` naming those files and the
learner's counters. Files are written under new names first; ``checkpoint.json`` is replaced
last (:mod:`agents._atomic`: temporary file, fsync, rename), which is atomic: a crash at any
moment leaves either the previous complete checkpoint or the new complete one, never a mix.

These files are SB3's own format, which pickles some objects. That is acceptable only because
they never leave this machine: checkpoints are loaded from the agent's own data folder, never
from the network or a peer (those get :mod:`agents.learner.snapshots`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from agents._atomic import write_atomically, write_text_atomically
from agents.exceptions import CheckpointError, StorageError
from agents.learner.library import PolicyLibrary
from agents.learner.schedules import SCHEDULE_ATTRIBUTES

__all__ = ["CheckpointInfo", "CheckpointStore"]

_MANIFEST = "checkpoint.json"


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """What ``checkpoint.json`` records besides the file names."""

    step: int
    episodes: int
    saved_at: float
    model_file: str
    replay_file: str | None = None
    library_file: str | None = None
    #: The lifelong loop's state: current context, schedule origin, drifts seen, adoptions.
    context: int = 1
    schedule_origin: int = 0
    drift_events: int = 0
    adaptations: int = 0
    #: The regret meter's sums (guard.RegretMeter): the regret is over the agent's whole life.
    deployed_return: float = 0.0
    baseline_return: float = 0.0
    learner_episodes: int = 0
    controller_episodes: int = 0
    controller_steps: int = 0


class CheckpointStore:
    """Checkpoints of one learner in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def manifest(self) -> Path:
        return self.directory / _MANIFEST

    def exists(self) -> bool:
        return self.manifest.exists()

    def save(
        self,
        model: BaseAlgorithm,
        *,
        episodes: int,
        library: PolicyLibrary | None = None,
        loop_state: Mapping[str, int | float] | None = None,
    ) -> CheckpointInfo:
        """Write a complete checkpoint, then switch ``checkpoint.json`` to it atomically.

        A write that fails (a full disk) raises :class:`StorageError` naming the folder; the
        previous checkpoint stays the one in force.
        """
        try:
            return self._save(model, episodes=episodes, library=library, loop_state=loop_state)
        except OSError as exc:
            msg = f"cannot write a checkpoint in {self.directory}: {exc}"
            raise StorageError(msg) from exc

    def _save(
        self,
        model: BaseAlgorithm,
        *,
        episodes: int,
        library: PolicyLibrary | None,
        loop_state: Mapping[str, int | float] | None,
    ) -> CheckpointInfo:
        self.directory.mkdir(parents=True, exist_ok=True)
        step = int(model.num_timesteps)
        stamp = f"{step:012d}-{time.time_ns()}"
        model_file = f"model-{stamp}.zip"
        write_atomically(
            self.directory / model_file,
            lambda path: model.save(path, exclude=list(SCHEDULE_ATTRIBUTES)),
        )
        replay_file = None
        if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
            replay_file = f"replay-{stamp}.pkl"
            write_atomically(self.directory / replay_file, model.save_replay_buffer)
        library_file = None
        if library is not None and len(library):
            library_file = f"library-{stamp}.msgpack"
            library.save(self.directory / library_file)
        info = CheckpointInfo(
            step=step,
            episodes=episodes,
            saved_at=time.time(),
            model_file=model_file,
            replay_file=replay_file,
            library_file=library_file,
            **(loop_state or {}),  # type: ignore[arg-type]  # the learner's own field names
        )
        previous = self.read() if self.exists() else None
        write_text_atomically(self.manifest, json.dumps(asdict(info), indent=2))
        if previous is not None:
            self._remove(previous, keep=info)
        return info

    def read(self) -> CheckpointInfo:
        try:
            data = json.loads(self.manifest.read_text())
            info = CheckpointInfo(**data)
        except (OSError, ValueError, TypeError) as exc:
            msg = f"cannot read checkpoint manifest {self.manifest}: {exc}"
            raise CheckpointError(msg) from exc
        for name in (info.model_file, info.replay_file, info.library_file):
            if name is not None and not (self.directory / name).exists():
                msg = f"checkpoint {self.manifest} names {name}, which is missing"
                raise CheckpointError(msg)
        return info

    def _remove(self, old: CheckpointInfo, *, keep: CheckpointInfo) -> None:
        kept = {keep.model_file, keep.replay_file, keep.library_file}
        for name in (old.model_file, old.replay_file, old.library_file):
            if name is not None and name not in kept:
                (self.directory / name).unlink(missing_ok=True)
