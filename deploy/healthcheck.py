"""Container healthchecks of the society's image: ``python /app/healthcheck.py agent|coordinator``.

Configured like the processes themselves, from the ``SOCIETY_*`` environment variables, so the
same line works in docker compose and Kubernetes. Exit status 0 when healthy, 1 with a one-line
reason otherwise.

- ``agent``: the broker holds the agent's retained status ``online`` and the agent sent
  telemetry within the timeout (its event loop runs and it is connected). It connects with the
  client id ``<agent id>-health``: connecting as the agent id would take over the agent's own
  session. The agent user may read every agent's status and telemetry (broker/acl). With one
  user per agent (broker/acl.per-agent, ``use_username_as_clientid``) the broker would turn
  that id back into the agent's own: set ``HEALTHCHECK_BROKER`` to a URL with the read-only
  ``monitor`` user then.
- ``coordinator``: the metrics endpoint answers and says the coordinator is connected to the
  broker (``society_bus_connected 1``).

An agent that cannot reach the broker keeps learning and queues what it publishes (that is the
design), so it is reported unhealthy but must not be restarted for it: use this as a readiness
check, not a liveness check.
"""

# ruff: noqa: INP001 - a script of deploy/, not a package

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
import urllib.request

from agents.bus.codec import decode_as
from agents.bus.mqtt import MqttTransport
from agents.bus.schemas import Status
from agents.bus.topics import Kind, Topics
from agents.bus.transport import ConnectOptions
from agents.bus.url import parse_broker_url
from agents.exceptions import MessageRejected, SocietyError
from agents.flags import default_agent_id
from agents.flags.common import DEFAULT_BROKER


async def check_agent(timeout: float) -> str | None:
    """``None`` when the agent is online and alive, else the reason it is not."""
    url = parse_broker_url(
        os.environ.get("HEALTHCHECK_BROKER") or os.environ.get("SOCIETY_BROKER") or DEFAULT_BROKER
    )
    topics = Topics(os.environ.get("SOCIETY_NAME") or "default")
    agent = os.environ.get("SOCIETY_AGENT_ID") or default_agent_id()
    status_topic = topics.agent(agent, Kind.STATUS)
    telemetry_topic = topics.agent(agent, Kind.TELEMETRY)
    options = ConnectOptions(client_id=f"{agent}-health", clean_session=True)
    online = False
    async with MqttTransport(url, timeout=timeout).connect(options) as connection:
        await connection.subscribe(status_topic, qos=1)
        await connection.subscribe(telemetry_topic, qos=0)
        async for message in connection.messages():
            if message.topic == status_topic:
                try:
                    online = decode_as(Status, message.payload).state == "online"
                except MessageRejected as exc:
                    return f"agent {agent}: unreadable status: {exc}"
                if not online:
                    return f"agent {agent} is offline"
            elif message.topic == telemetry_topic and online:
                return None
    return f"agent {agent}: the broker closed the connection"


def check_coordinator(timeout: float) -> str | None:
    port = int(os.environ.get("SOCIETY_METRICS_PORT") or 9464)
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = response.read().decode()
    for line in body.splitlines():
        if line.startswith("society_bus_connected "):
            connected = float(line.split()[1]) == 1.0
            return None if connected else "coordinator: not connected to the broker"
    return f"coordinator: {url} has no society_bus_connected"


def _too_late(signum: int, frame: object) -> None:  # noqa: ARG001 - a signal handler's
    sys.stderr.write("unhealthy: the check itself did not end in time\n")
    sys.stderr.flush()
    os._exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("process", choices=["agent", "coordinator"])
    parser.add_argument("--timeout", type=float, default=8.0, help="seconds to wait")
    args = parser.parse_args(argv)
    # A healthcheck must end: whatever hangs (a connection that neither opens nor fails, a
    # client that does not close), the alarm ends the process a few seconds after its time.
    signal.signal(signal.SIGALRM, _too_late)
    signal.alarm(math.ceil(args.timeout) + 5)
    try:
        if args.process == "agent":
            reason = asyncio.run(asyncio.wait_for(check_agent(args.timeout), args.timeout))
        else:
            reason = check_coordinator(args.timeout)
    except TimeoutError:
        reason = f"{args.process}: no status and telemetry within {args.timeout} s"
    except (OSError, SocietyError) as exc:
        reason = f"{args.process}: {exc}"
    if reason is not None:
        sys.stderr.write(f"unhealthy: {reason}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
