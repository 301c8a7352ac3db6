"""The managed broker: a broker process that ``society run`` (or a test) owns.

Mosquitto when a ``mosquitto`` binary is on the PATH, started with a generated configuration
(:mod:`agents.broker.mosquitto_conf`) on a free port; otherwise the project's pure-Python
fallback broker (:mod:`agents.broker.fallback`) in its own process, with a warning. Either way
the broker is a separate OS process that can be stopped, killed and restarted on the same
port, which is what the fault tests do.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from agents._process import die_with_parent, free_port, wait_for_port
from agents.broker.mosquitto_conf import MAX_PACKET_SIZE, MosquittoSettings
from agents.bus.url import BrokerUrl
from agents.exceptions import BrokerError

__all__ = ["BrokerKind", "ManagedBroker", "find_mosquitto"]

log = logging.getLogger(__name__)

BrokerKind = Literal["auto", "mosquitto", "python"]


def find_mosquitto() -> str | None:
    """The mosquitto binary: on the PATH, or in /usr/sbin where Debian puts it."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


class ManagedBroker:
    """Starts, stops, kills and restarts one broker process on a fixed port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        kind: BrokerKind = "auto",
        start_timeout: float = 15.0,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout = start_timeout
        binary = find_mosquitto() if kind in {"auto", "mosquitto"} else None
        if kind == "mosquitto" and binary is None:
            msg = "no mosquitto binary found (install the mosquitto package)"
            raise BrokerError(msg)
        self.binary = binary
        self.kind: Literal["mosquitto", "python"] = "mosquitto" if binary else "python"
        #: Whether "auto" found no Mosquitto and fell back (said once, at start).
        self.fell_back = kind == "auto" and binary is None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> BrokerUrl:
        return BrokerUrl(host=self.host, port=self.port)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def command(self) -> list[str]:
        if self.kind == "mosquitto":
            assert self.binary is not None
            config = self.data_dir / "mosquitto.conf"
            return [self.binary, "-c", str(config)]
        return [
            sys.executable,
            "-m",
            "agents.broker.fallback",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--max-packet-size",
            str(MAX_PACKET_SIZE),
        ]

    def start(self) -> BrokerUrl:
        """Start the broker and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.kind == "mosquitto":
            settings = MosquittoSettings(port=self.port, data_dir=self.data_dir, host=self.host)
            (self.data_dir / "mosquitto.conf").write_text(settings.render())
        elif self.fell_back:
            log.warning(
                "no mosquitto binary found: starting the pure-Python fallback broker "
                "(fine for a laptop, not for production)"
            )
        log_file = (self.data_dir / f"{self.kind}.out").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in the terminal goes to `society run`, which stops the
            # agents and the coordinator first (they flush to the broker) and the broker last.
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads hold locks at this point
        )
        log_file.close()
        if not wait_for_port(self.host, self.port, self.start_timeout):
            code = self.process.poll()
            self.kill()
            msg = (
                f"{self.kind} broker did not start on {self.host}:{self.port} "
                f"(exit code {code}); see {self.data_dir}"
            )
            raise BrokerError(msg)
        log.info("%s broker listening on %s", self.kind, self.url)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM); Mosquitto saves its persistence file on the way out."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None

    def kill(self) -> None:
        """Kill without warning, as a crash would (SIGKILL)."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self.process = None

    def restart(self) -> BrokerUrl:
        self.stop()
        return self.start()
