"""Child processes that never outlive their parent, and free TCP ports."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import sys
import time

__all__ = ["die_with_parent", "free_port", "lower_priority", "wait_for_port"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for children: the kernel sends SIGTERM if our process dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere it does nothing and the orchestrator's
    own shutdown is the only guard. This is what keeps ``kill -9`` of ``society run`` from
    leaving agents behind.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def lower_priority(by: int) -> None:
    """Lower this process's CPU priority by ``by`` (``nice``; 0 leaves it as it is).

    An agent's learning is throughput work; the broker's, the coordinator's and the
    evaluators' is what every agent waits for. On a machine the agents fill (a society of 32
    on two cores), equal priorities left the one evaluation worker a 35th of the CPU and
    evaluations a minute and more behind (docs/scaling.md). Lowering priority needs no
    privilege; on a machine with cores to spare it changes nothing.
    """
    if by > 0:
        os.nice(by)
