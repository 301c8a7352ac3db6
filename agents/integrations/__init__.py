"""Bridges from the society to other systems (Home Assistant, for now).

Each integration builds payloads with pure functions; the processes publish them.
"""

from __future__ import annotations
