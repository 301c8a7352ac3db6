"""Child processes of ``society run``: started in their own session, stopped in order.

Children get their own session so that Ctrl-C in the terminal reaches only the orchestrator,
which then stops them in a deliberate order (agents first, so they checkpoint and publish
their last snapshot; then the coordinator; then the broker). ``die_with_parent`` makes the
kernel stop them too if the orchestrator itself is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agents._process import die_with_parent

__all__ = ["Child", "spawn"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Child:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    waiter: asyncio.Task[int] = field(init=False)

    def __post_init__(self) -> None:
        self.waiter = asyncio.create_task(self.process.wait(), name=f"wait:{self.name}")

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def running(self) -> bool:
        return self.process.returncode is None

    def signal(self, signum: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    async def stop(self, timeout: float) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(self.waiter), timeout)
        except TimeoutError:
            log.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
            self.signal(signal.SIGKILL)
            return await self.waiter


async def spawn(
    name: str, arguments: list[str], log_path: Path, env: dict[str, str] | None = None
) -> Child:
    """Start ``python -m agents <arguments>`` with output going to ``log_path``.

    ``env`` adds to this process's environment (secrets go there, never on command lines).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agents",
            *arguments,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
            env={**os.environ, **(env or {})},
        )
    return Child(name=name, process=process, log_path=log_path)
