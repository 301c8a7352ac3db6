"""Logging set-up shared by every process: plain lines for people, JSON lines for machines."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["configure_logging"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName if record.processName != "MainProcess" else None,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in entry.items() if v is not None})


def configure_logging(level: str = "INFO", *, json_lines: bool = False, name: str = "") -> None:
    """Log to stderr at ``level``; ``name`` prefixes plain lines (``agent a0``)."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    else:
        prefix = f"{name} " if name else ""
        formatter = logging.Formatter(
            f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", "%H:%M:%S"
        )
        formatter.converter = time.localtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # paho/aiomqtt are chatty at INFO about things our own logs already say.
    logging.getLogger("mqtt").setLevel(logging.WARNING)
