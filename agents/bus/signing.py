"""Integrity and authenticity: the SHA-256 digest over tensors, and HMAC signatures.

The digest is computed over a framing that any language can reproduce, tensor by tensor in
the order they are listed::

    for each tensor:
        u32 len(name) | name (UTF-8) | u32 len(dtype) | dtype (ASCII) |
        u32 ndim | ndim x u64 dims | u64 len(data) | data

with every integer little-endian. Length prefixes make the framing unambiguous: no two
different tensor lists produce the same byte stream.

When the society has a key (``--society-key-file`` / ``SOCIETY_KEY``), every message of every
kind carries an HMAC-SHA256 over its canonical encoding (:func:`signing_input`), and
receivers refuse unsigned or tampered ones. The key never travels on the bus.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable
from typing import TypeVar

import msgspec

from agents.bus.arrays import Tensor
from agents.bus.schemas import FederatedWeights, Message, PolicySnapshot
from agents.bus.topics import Kind
from agents.exceptions import MessageRejected

__all__ = ["SIGNED_KINDS", "sign", "sign_with", "signing_input", "tensor_digest", "verify"]

M = TypeVar("M", bound=Message)

_CANONICAL = msgspec.msgpack.Encoder()


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


# --- authenticity ------------------------------------------------------------------------------

#: Kinds of message that carry a signature when the society has a key: all of them.
SIGNED_KINDS = tuple(kind.value for kind in Kind)


def signing_input(message: Message) -> bytes:
    """The bytes an HMAC covers: the message as msgspec encodes it with ``signature`` unset.

    Every field is covered (a snapshot's tensors through their ``digest``). A third-party
    signer must produce the same canonical encoding: a MessagePack map of all fields in schema
    order, ``signature`` nil, as ``docs/protocol.md`` describes.
    """
    unsigned = msgspec.structs.replace(message, signature=None)
    if isinstance(unsigned, PolicySnapshot):
        # The tensors are covered by the digest (checked separately); leaving them out keeps
        # signing a 16 MiB snapshot as cheap as signing its header.
        unsigned = msgspec.structs.replace(
            unsigned,
            tensors=[],
            library=[msgspec.structs.replace(p, tensors=[]) for p in unsigned.library],
        )
    elif isinstance(unsigned, FederatedWeights):
        # The weights are covered by the digest; the update (``delta``) is signed as it is.
        unsigned = msgspec.structs.replace(unsigned, tensors=[])
    return _CANONICAL.encode(unsigned)


def sign(message: M, key: bytes) -> M:
    """``message`` with its HMAC-SHA256 signature (hex) set."""
    signature = hmac.new(key, signing_input(message), hashlib.sha256).hexdigest()
    return msgspec.structs.replace(message, signature=signature)


def sign_with(message: M, key: bytes | None) -> M:
    """``message`` signed with the society's key, or as it is in a society without one."""
    return message if key is None else sign(message, key)


def verify(message: Message, key: bytes) -> None:
    """Raise :class:`MessageRejected` (``signature``) unless ``message`` is signed with ``key``."""
    signature: str | None = getattr(message, "signature", None)
    if not signature:
        raise MessageRejected("signature", "unsigned, and this society requires signatures")
    expected = hmac.new(key, signing_input(message), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise MessageRejected("signature", "the signature does not match (tampered or wrong key)")
