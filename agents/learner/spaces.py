"""gymnasium spaces on the wire: describe a space, rebuild it, and compare two of them."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from agents.bus.arrays import from_wire, to_wire
from agents.bus.schemas import SpaceSpec
from agents.exceptions import ConfigError

__all__ = ["describe_space", "rebuild_space", "same_space"]


def describe_space(space: spaces.Space[object]) -> SpaceSpec:
    """The wire description of a space. Raises :class:`ConfigError` for unsupported kinds."""
    if isinstance(space, spaces.Box):
        return SpaceSpec(
            kind="box",
            shape=list(space.shape),
            dtype=np.dtype(space.dtype).name,
            low=to_wire(space.low),
            high=to_wire(space.high),
        )
    if isinstance(space, spaces.Discrete):
        return SpaceSpec(
            kind="discrete", shape=[], dtype="int64", n=int(space.n), start=int(space.start)
        )
    if isinstance(space, spaces.MultiDiscrete):
        return SpaceSpec(
            kind="multi_discrete",
            shape=list(space.shape),
            dtype="int64",
            nvec=[int(v) for v in np.asarray(space.nvec).ravel()],
        )
    if isinstance(space, spaces.MultiBinary):
        return SpaceSpec(kind="multi_binary", shape=list(space.shape), dtype="int8")
    msg = (
        f"space {space} is not supported: agents handle Box, Discrete, MultiDiscrete and "
        "MultiBinary spaces (flatten Dict/Tuple spaces with a gymnasium wrapper)"
    )
    raise ConfigError(msg)


def rebuild_space(spec: SpaceSpec) -> spaces.Space[object]:
    """The gymnasium space a (validated) description stands for."""
    if spec.kind == "box":
        assert spec.low is not None
        assert spec.high is not None
        low = from_wire(spec.low.dtype, spec.low.shape, spec.low.data, require_finite=False)
        high = from_wire(spec.high.dtype, spec.high.shape, spec.high.data, require_finite=False)
        return spaces.Box(low=low, high=high, dtype=np.dtype(spec.dtype).type)  # type: ignore[arg-type]
    if spec.kind == "discrete":
        assert spec.n is not None
        return spaces.Discrete(spec.n, start=spec.start)
    if spec.kind == "multi_discrete":
        assert spec.nvec is not None
        return spaces.MultiDiscrete(spec.nvec)
    return spaces.MultiBinary(spec.shape)


def same_space(a: SpaceSpec, b: SpaceSpec) -> bool:
    """Whether two descriptions are the same space (kind, shape, dtype, bounds)."""
    return a == b
