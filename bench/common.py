"""Shared pieces of the benchmarks: the machine they ran on, and writing results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

#: Vector instruction sets, widest first, by which NumPy's OpenBLAS picks its kernels at run
#: time (SkylakeX's with AVX-512, Haswell's or Zen's with AVX2 only). Kernels of another width
#: round the policy's forward pass differently, so the same seeds learn along other curves on
#: a machine of another level: an isolated twin reached 475 on CartPole at 13,312 steps with
#: AVX-512 and at 9,216 with the AVX2 kernels (OPENBLAS_CORETYPE=Zen), same code and seed.
SIMD_LEVELS = ("avx512f", "avx2", "avx", "sse4_2")


def simd_level(flags: Iterable[str]) -> str:
    """The widest of :data:`SIMD_LEVELS` among a CPU's ``flags`` ("" if none)."""
    present = set(flags)
    return next((level for level in SIMD_LEVELS if level in present), "")


def machine() -> dict[str, Any]:
    """What the figures were measured on.

    ``simd``: runs on machines of different levels are not step for step comparable, even on
    the same seeds (:data:`SIMD_LEVELS`); a VM's model name ("EPYC") does not tell them apart.
    """
    model, flags = "", list[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value.split()
    except OSError:
        pass
    cpu = model or platform.processor() or platform.machine()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=ROOT, check=False,
        ).stdout.strip()  # fmt: skip
    except OSError:
        commit = ""
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "simd": simd_level(flags),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "commit": commit or "uncommitted",
        "date": time.strftime("%Y-%m-%d"),
    }


def add_keep_others_option(parser: argparse.ArgumentParser) -> None:
    """``--add``: re-run some settings and keep the last results of the others."""
    parser.add_argument(
        "--add", action="store_true",
        help="keep the last results of the other settings; this run replaces its own settings'",
    )  # fmt: skip


def kept_results(name: str, replaced: list[str]) -> tuple[list[Any], list[dict[str, Any]]]:
    """The last runs of settings not in ``replaced``, and the sessions that produced them.

    Each kept session lists only the settings whose rows it still stands behind.
    """
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"--add: no earlier results in {path} to keep")
    last = json.loads(path.read_text())
    runs = [r for r in last["runs"] if r["setting"] not in replaced]
    kept = {r["setting"] for r in runs}
    sessions = [
        {**session, "settings": [s for s in session["settings"] if s in kept]}
        for session in last["sessions"]
        if kept & set(session["settings"])
    ]
    return runs, sessions


def measured_on(result: dict[str, Any], *, versions: str = "") -> list[str]:
    """A table's first two lines: the command, and the machine, commit and time it took.

    ``versions`` adds software besides torch (``", Ray 2.60.0"``).
    """
    m = result["machine"]
    return [
        f"Command: `{result['command']}`",
        f"({m['date']}, {m['cores']} cores, {m['cpu']}, torch {m['torch']}{versions}, commit "
        f"{m['commit']}; {result['seconds']:,} s).",
    ]


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def replace_section(name: str, body: str, doc: str = "benchmarks.md") -> None:
    """Replace the text between ``<!-- bench:NAME -->`` markers in ``docs/{doc}``."""
    path = ROOT / "docs" / doc
    text = path.read_text()
    pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.DOTALL)
    if not pattern.search(text):
        msg = f"docs/{doc} has no <!-- bench:{name} --> section"
        raise SystemExit(msg)
    path.write_text(pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text))
