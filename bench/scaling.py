"""How far one broker and one coordinator go: the figures behind docs/scaling.md.

Three measurements, each bounded in count and time, on the loopback interface only:

1. **Broker**: a managed Mosquitto (the project's generated config) carries experience
   batches of the real encoded size (256 CartPole transitions) at QoS 1 from publishers to
   one QoS 1 subscriber (the coordinator's role): one publisher awaiting each PUBACK (what an
   agent's outbox does), then several publishers at once.
2. **Evaluation**: :func:`agents.coordinator.evaluation.evaluate_snapshot` on a CartPole PPO
   snapshot and on a thermostat PPO snapshot with the smart-home scenario's regimes, first
   call (baseline and random references computed) and later calls (cached).
3. **Coordinator intake**: ``Coordinator.inbox`` (validation, de-duplication, roster, the
   SQLite history) handling experience batches in-process.

    python bench/scaling.py [--messages 2000] [--publishers 4]

Writes bench/results/scaling.json and prints a summary.

4. **Societies of N** (``--societies 4 8 16 32 48``, run on its own): N agent processes with
   a broker and a coordinator against N bare stable-baselines3 processes, alternately
   (:mod:`bench.society_size`); writes bench/results/society_size.json and the tables in
   docs/benchmarks.md and docs/scaling.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, write_result
from bench.society_size import cpu_seconds

ROWS = 256  # transitions per experience batch (the scenarios' learner.experience_batch)
TIME_LIMIT = 30.0  # seconds per broker run, whatever --messages says


def experience_payloads(agent: str, count: int) -> list[bytes]:
    from agents.bus.codec import encode
    from tests import factories

    return [
        encode(factories.experience(agent=agent, seq=seq, rows=ROWS)) for seq in range(1, count + 1)
    ]


async def broker_run(url: Any, pid: int, publishers: int, per_publisher: int) -> dict[str, Any]:
    """``publishers`` connections each publish ``per_publisher`` batches, awaiting PUBACKs.

    Publishers and subscriber share this process's event loop, so the rates are bounded by
    the Python clients as much as by the broker; the broker's own CPU time per message says
    what the broker alone could carry.
    """
    from agents.bus.mqtt import MqttTransport
    from agents.bus.topics import Kind, Topics
    from agents.bus.transport import ConnectOptions

    topics = Topics("bench")
    transport = MqttTransport(url, timeout=30)
    payloads = {f"a{i}": experience_payloads(f"a{i}", per_publisher) for i in range(publishers)}
    size = len(payloads["a0"][0])
    total = publishers * per_publisher
    received = 0
    done = asyncio.Event()
    options = ConnectOptions("bench-coordinator", clean_session=True)
    async with transport.connect(options) as subscriber:
        await subscriber.subscribe(topics.agents_filter(Kind.EXPERIENCE), qos=1)

        async def receive() -> None:
            nonlocal received
            async for _ in subscriber.messages():
                received += 1
                if received == total:
                    done.set()
                    return

        async def publish(agent: str) -> None:
            topic = topics.agent(agent, Kind.EXPERIENCE)
            async with transport.connect(ConnectOptions(agent, clean_session=True)) as conn:
                for payload in payloads[agent]:
                    await conn.publish(topic, payload, qos=1, retain=False)

        receiver = asyncio.create_task(receive())
        broker_cpu = cpu_seconds(pid)
        client_cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(publish(agent) for agent in payloads)), TIME_LIMIT)
        published = time.perf_counter() - started
        await asyncio.wait_for(done.wait(), TIME_LIMIT)
        delivered = time.perf_counter() - started
        broker_cpu = cpu_seconds(pid) - broker_cpu
        client_cpu = time.process_time() - client_cpu
        receiver.cancel()
    return {
        "publishers": publishers,
        "messages": total,
        "payload_bytes": size,
        "publish_seconds": round(published, 3),
        "deliver_seconds": round(delivered, 3),
        "client_cpu_seconds": round(client_cpu, 3),
        "messages_per_second": round(total / delivered, 1),
        "megabytes_per_second": round(total * size / delivered / 1e6, 2),
        "publish_rate_per_publisher": round(per_publisher / published, 1),
        "broker_cpu_seconds": round(broker_cpu, 3),
        "broker_messages_per_cpu_second": round(total / broker_cpu, 1) if broker_cpu else None,
    }


def broker(messages: int, publishers: int) -> dict[str, Any]:
    from agents.broker.managed import ManagedBroker

    with (
        tempfile.TemporaryDirectory() as folder,
        ManagedBroker(Path(folder), kind="mosquitto") as managed,
    ):
        assert managed.process is not None
        pid = managed.process.pid
        single = asyncio.run(broker_run(managed.url, pid, 1, messages))
        many = asyncio.run(broker_run(managed.url, pid, publishers, messages // publishers))
    return {"one_publisher": single, "many_publishers": many}


def evaluation(repeats: int) -> dict[str, Any]:
    import msgspec

    from agents.bus.codec import encode
    from agents.bus.schemas import SCHEMA_VERSION, PolicySnapshot
    from agents.bus.signing import tensor_digest
    from agents.coordinator.evaluation import EvaluationRequest, evaluate_snapshot
    from agents.learner.envs import DriftPlan
    from agents.learner.learner import Learner, LearnerConfig, limit_torch_threads
    from agents.learner.snapshots import policy_tensors
    from agents.scenarios import load_scenario
    from agents.worlds import device_params

    limit_torch_threads()

    class Quiet:
        def experience(self, batch: Any, step: int) -> None: ...
        def snapshot(self, state: Any) -> None: ...
        def episode(self, episode_return: float, length: int, step: int, regime: str) -> None: ...
        def adapted(self, adaptation: Any) -> None: ...

    def snapshot(scenario_name: str) -> tuple[bytes, int]:
        scenario = load_scenario(scenario_name)
        env_id = scenario.world.env
        learner = Learner(LearnerConfig(env_id=env_id, algo="ppo", seed=1), Quiet())
        tensors = policy_tensors(learner.model.policy)
        assert scenario.drift is not None
        regimes = DriftPlan(tuple(scenario.drift.phases), regimes=scenario.drift.regimes).specs(
            env_id
        )
        message = PolicySnapshot(
            schema=SCHEMA_VERSION, agent="a0", version=1, step=0, algo="ppo", env_id=env_id,
            obs_space=learner.obs_spec, action_space=learner.action_spec, arch=learner.arch,
            tensors=tensors, digest=tensor_digest(tensors), regimes=regimes,
            env_kwargs=device_params(env_id, seed=0, index=0),
        )  # fmt: skip
        return encode(msgspec.structs.replace(message)), len(regimes)

    results: dict[str, Any] = {}
    for name in ("cartpole", "smart-home"):
        payload, regimes = snapshot(name)
        request = EvaluationRequest(payload, episodes=5, seed=10_000)
        started = time.perf_counter()
        first = evaluate_snapshot(request)
        cold = time.perf_counter() - started
        assert first.error_reason is None, first.error_detail
        warm, warm_cpu = [], []
        for _ in range(repeats):
            started, started_cpu = time.perf_counter(), time.process_time()
            result = evaluate_snapshot(request)
            warm.append(time.perf_counter() - started)
            warm_cpu.append(time.process_time() - started_cpu)
        policy_steps = sum(len(r.returns) for r in result.regimes)  # episodes
        steps = (
            sum(result.returns)  # CartPole pays 1 per step
            if name == "cartpole"
            else policy_steps * 96  # a thermostat episode is one day of 15-minute steps
        )
        results[name] = {
            "regimes": regimes,
            "episodes": 5,
            "policy_steps": int(steps),
            "first_seconds": round(cold, 3),
            "seconds": round(statistics.median(warm), 4),
            "cpu_seconds": round(statistics.median(warm_cpu), 4),
            "cpu_seconds_per_policy_step": round(statistics.median(warm_cpu) / steps, 7),
            "payload_bytes": len(payload),
        }
    return results


def intake(messages: int) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from agents.bus.memory import MemoryBroker
    from agents.bus.topics import Kind, Topics
    from agents.bus.transport import RawMessage
    from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
    from agents.coordinator.history import History

    topics = Topics("bench")
    raw = [
        RawMessage(topics.agent("a0", Kind.EXPERIENCE), payload)
        for payload in experience_payloads("a0", messages)
    ]
    with tempfile.TemporaryDirectory() as folder:
        coordinator = Coordinator(
            CoordinatorConfig(society="bench"), MemoryBroker(), metrics_registry=CollectorRegistry()
        )
        coordinator.history = History(Path(folder) / "history.sqlite")

        async def feed() -> tuple[float, float]:
            started, started_cpu = time.perf_counter(), time.process_time()
            for message in raw:
                await coordinator.inbox(message)
            return time.perf_counter() - started, time.process_time() - started_cpu

        seconds, cpu = asyncio.run(feed())
        coordinator.history.close()
    received = coordinator.roster.agents["a0"].experience_batches_received
    assert received == messages, received
    return {
        "messages": messages,
        "seconds": round(seconds, 3),
        "messages_per_second": round(messages / seconds, 1),
        "cpu_seconds": round(cpu, 3),
        "cpu_microseconds_per_message": round(cpu / messages * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=2000, help="batches per broker run")
    parser.add_argument("--publishers", type=int, default=4, help="publishers in the second run")
    parser.add_argument("--repeats", type=int, default=3, help="evaluations timed per snapshot")
    parser.add_argument(
        "--societies", type=int, nargs="+", metavar="N",
        help="measure societies of these sizes against bare processes (only that)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=4000, help="--societies: steps per agent")
    parser.add_argument(
        "--steps-per-agent", type=int, default=200,
        help="--societies: at least this many steps per agent per member of the society, so "
        "that large societies learn long after the last one started",
    )  # fmt: skip
    parser.add_argument(
        "--eval-wait", type=float, default=120.0,
        help="--societies: seconds to wait for the last evaluations after the agents ended",
    )  # fmt: skip
    args = parser.parse_args()
    if args.societies:
        from bench.society_size import report

        report(args.societies, args.steps, args.steps_per_agent, args.eval_wait, sys.argv[1:])
        return
    result = {
        "machine": machine(),
        "broker": broker(args.messages, args.publishers),
        "coordinator_intake": intake(args.messages),
        "evaluation": evaluation(args.repeats),
    }
    path = write_result("scaling", result)
    for section in ("broker", "coordinator_intake", "evaluation"):
        print(section, result[section])
    print(f"written to {path}")


if __name__ == "__main__":
    main()
