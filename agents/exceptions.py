"""The one exception tree of Agent Society.

Every error the project raises on purpose derives from :class:`SocietyError`, so a caller can
catch the project's failures without catching programming errors. The tree is small on purpose:

    SocietyError
    ├── ConfigError            bad flag, environment variable, scenario file or hyperparameter
    ├── BusError               anything about the MQTT bus
    │   ├── BusConnectionError the broker cannot be reached or dropped the connection
    │   ├── BusAuthError       the broker refused our credentials (retrying will not help)
    │   │   └── BusTlsError    its TLS certificate cannot be verified (nor will it be)
    │   └── MessageRejected    a received payload failed validation (carries a bounded reason)
    ├── LearnerError           the learner cannot be built or cannot load weights
    │   └── IncompatiblePolicy a snapshot does not fit this learner's spaces or architecture
    ├── CheckpointError        a local checkpoint is missing pieces or cannot be written
    ├── StorageError           a process's data folder cannot be written (disk full, read-only)
    └── BrokerError            the managed broker could not be started
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "BusAuthError",
    "BusConnectionError",
    "BusError",
    "BusTlsError",
    "CheckpointError",
    "ConfigError",
    "IncompatiblePolicy",
    "LearnerError",
    "MessageRejected",
    "SocietyError",
    "StorageError",
]


class SocietyError(Exception):
    """Base class of every error Agent Society raises on purpose."""


class ConfigError(SocietyError):
    """A flag, environment variable, scenario file or hyperparameter has a bad value.

    The message names the offending setting and value; the CLI prints it on one line and
    exits with status 2.
    """


class BusError(SocietyError):
    """Something went wrong on the MQTT bus."""


class BusConnectionError(BusError):
    """The broker cannot be reached, or the connection was lost."""


class BusAuthError(BusError):
    """The broker refused the connection (bad credentials or not authorised).

    Unlike :class:`BusConnectionError` this is not retried: the same credentials will be
    refused again.
    """


class BusTlsError(BusAuthError):
    """The broker's TLS certificate cannot be verified: not retried, as a refusal is not.

    A certificate that did not verify will not verify on the next attempt either; retrying
    would only hide the mistake (a missing ``--tls-ca``, a wrong host name) behind an agent
    that learns its whole budget offline.
    """


class MessageRejected(BusError):  # noqa: N818 - it names the event, like httpx's exceptions
    """A received payload failed validation and was not used.

    Attributes:
        reason: a short machine-readable reason from a bounded set (see
            :data:`agents.bus.codec.REJECT_REASONS`); it becomes a Prometheus label value.
        detail: a human-readable explanation for the log.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class LearnerError(SocietyError):
    """The learner cannot be built, or cannot use the weights it was given."""


class IncompatiblePolicy(LearnerError):  # noqa: N818 - reads as a verdict on the policy
    """A policy snapshot does not fit this learner (spaces, algorithm or architecture)."""


class CheckpointError(SocietyError):
    """A local checkpoint cannot be written, or is missing pieces when read back."""


class StorageError(SocietyError):
    """A process's data folder cannot be written: the disk is full or it is read-only.

    What must not be lost is written there first (the outbox), so the process stops rather
    than go on dropping it.
    """


class BrokerError(SocietyError):
    """The managed broker could not be started or stopped."""
