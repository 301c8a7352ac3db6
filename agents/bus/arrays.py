"""Arrays on the wire: raw little-endian bytes plus a dtype name and a shape.

numpy arrays never travel as pickles or as lists of numbers. An array is sent as
``[dtype, shape, data]``: ``dtype`` is one of :data:`WIRE_DTYPES`, ``shape`` a list of
non-negative ints, ``data`` the C-order little-endian bytes. Decoding checks the dtype against
the whitelist and the byte length against the shape before a single byte is interpreted.
"""

from __future__ import annotations

import math
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

from agents.exceptions import MessageRejected

__all__ = ["WIRE_DTYPES", "Array", "Tensor", "from_wire", "to_wire"]

#: dtype names accepted on the wire, mapped to explicit little-endian numpy dtypes.
WIRE_DTYPES: Final[dict[str, np.dtype[np.generic]]] = {
    "bool": np.dtype("bool"),
    "uint8": np.dtype("<u1"),
    "int8": np.dtype("<i1"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}

_MAX_DIMS: Final = 8


class Array(msgspec.Struct, array_like=True, forbid_unknown_fields=True, frozen=True):
    """An n-dimensional array as ``[dtype, shape, data]``."""

    dtype: str
    shape: list[int]
    data: bytes


class Tensor(msgspec.Struct, array_like=True, forbid_unknown_fields=True, frozen=True):
    """A named array as ``[name, dtype, shape, data]`` (one entry of a policy's state)."""

    name: str
    dtype: str
    shape: list[int]
    data: bytes


def _wire_name(dtype: np.dtype[np.generic]) -> str:
    for name, wire in WIRE_DTYPES.items():
        if wire.kind == dtype.kind and wire.itemsize == dtype.itemsize:
            return name
    msg = f"dtype {dtype} cannot travel on the bus (allowed: {', '.join(WIRE_DTYPES)})"
    raise ValueError(msg)


def to_wire(array: npt.ArrayLike) -> Array:
    """Encode an array (any byte order) as little-endian C-order bytes."""
    arr = np.asarray(array)
    name = _wire_name(arr.dtype)
    wire = np.ascontiguousarray(arr, dtype=WIRE_DTYPES[name])
    return Array(dtype=name, shape=list(wire.shape), data=wire.tobytes())


def from_wire(
    dtype: str,
    shape: list[int],
    data: bytes,
    *,
    what: str = "array",
    require_finite: bool = True,
) -> npt.NDArray[np.generic]:
    """Decode and check one array. Raises :class:`MessageRejected` on any mismatch.

    Checks, in order: dtype whitelist, shape sanity, byte length = product(shape) * itemsize,
    and (for floats, when ``require_finite``) that no value is NaN or infinite. The returned
    array is read-only and does not copy ``data``.
    """
    wire = WIRE_DTYPES.get(dtype)
    if wire is None:
        raise MessageRejected("dtype", f"{what}: dtype {dtype!r} is not allowed")
    if len(shape) > _MAX_DIMS or any(d < 0 for d in shape):
        raise MessageRejected("shape", f"{what}: bad shape {shape}")
    expected = math.prod(shape) * wire.itemsize
    if expected != len(data):
        raise MessageRejected(
            "shape", f"{what}: shape {shape} of {dtype} needs {expected} bytes, got {len(data)}"
        )
    out = np.frombuffer(data, dtype=wire).reshape(shape)
    if require_finite and wire.kind == "f" and out.size and not np.isfinite(out).all():
        raise MessageRejected("non_finite", f"{what}: contains NaN or infinite values")
    return out
