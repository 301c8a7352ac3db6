"""Each process's flags, declared once (see :mod:`agents.flags.declare`).

:class:`AgentFlags`, :class:`CoordinatorFlags`, :class:`EvaluatorFlags` and :class:`RunFlags`
are the typed settings of ``society agent``, ``society coordinator``, ``society evaluator`` and
``society run``. The command line
(``agents.cli``) builds its parser from them and hands them down; ``society run`` writes an
agent's and the coordinator's back into flags with :func:`to_argv` to start them. Nothing
here imports ``agents.cli``.
"""

from __future__ import annotations

from agents.flags.agent import AgentFlags, default_agent_id
from agents.flags.coordinator import CoordinatorFlags
from agents.flags.declare import Flag, FlagKind, flag_field, flag_fields, from_values, to_argv
from agents.flags.evaluator import EvaluatorFlags, default_evaluator_id
from agents.flags.run import RunFlags

__all__ = [
    "AgentFlags",
    "CoordinatorFlags",
    "EvaluatorFlags",
    "Flag",
    "FlagKind",
    "RunFlags",
    "default_agent_id",
    "default_evaluator_id",
    "flag_field",
    "flag_fields",
    "from_values",
    "to_argv",
]
