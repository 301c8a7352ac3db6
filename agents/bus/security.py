"""What a process needs to be trusted on the bus: the society's key and its TLS files.

The key signs snapshots and directives (:mod:`agents.bus.signing`); the TLS files secure the
connection to the broker (:class:`~agents.bus.mqtt.TlsFiles`). Both are read here, from the
settings of whichever process asks (agent, coordinator, ``society run``, the inspector), so
none of them depends on the command line for it.
"""

from __future__ import annotations

import os
from pathlib import Path

from agents.bus.mqtt import TlsFiles
from agents.exceptions import ConfigError

__all__ = ["KEY_ENV", "society_key", "tls_files"]

#: The environment variable that may hold the society's key itself.
KEY_ENV = "SOCIETY_KEY"


def society_key(path: Path | None) -> bytes | None:
    """The society's key: from ``--society-key-file``, else ``SOCIETY_KEY``, else none.

    Never a plain flag: a secret on a command line is visible to every user of the machine.
    """
    key = path.read_bytes().strip() if path is not None else os.environ.get(KEY_ENV, "").encode()
    if path is not None and not key:
        msg = f"--society-key-file {path}: the file is empty"
        raise ConfigError(msg)
    return key or None


def tls_files(ca: Path | None, cert: Path | None, key: Path | None) -> TlsFiles:
    """The ``--tls-ca``, ``--tls-cert`` and ``--tls-key`` files of a broker connection."""
    if key is not None and cert is None:
        msg = "--tls-key needs --tls-cert"
        raise ConfigError(msg)
    return TlsFiles(ca_file=ca, cert_file=cert, key_file=key)
