"""Integrity of policy snapshots: the SHA-256 digest over a snapshot's tensors.

The digest is computed over a framing that any language can reproduce, tensor by tensor in
the order they are listed::

    for each tensor:
        u32 len(name) | name (UTF-8) | u32 len(dtype) | dtype (ASCII) |
        u32 ndim | ndim x u64 dims | u64 len(data) | data

with every integer little-endian. Length prefixes make the framing unambiguous: no two
different tensor lists produce the same byte stream.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

from agents.bus.arrays import Tensor

__all__ = ["tensor_digest"]


def tensor_digest(tensors: Iterable[Tensor]) -> str:
    """Hex SHA-256 of ``tensors`` in the framing described in the module docstring."""
    sha = hashlib.sha256()
    for tensor in tensors:
        name = tensor.name.encode()
        dtype = tensor.dtype.encode()
        sha.update(struct.pack("<I", len(name)))
        sha.update(name)
        sha.update(struct.pack("<I", len(dtype)))
        sha.update(dtype)
        sha.update(struct.pack("<I", len(tensor.shape)))
        sha.update(struct.pack(f"<{len(tensor.shape)}Q", *tensor.shape))
        sha.update(struct.pack("<Q", len(tensor.data)))
        sha.update(tensor.data)
    return sha.hexdigest()
