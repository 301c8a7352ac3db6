"""Agent Society: a society of lifelong-learning reinforcement-learning agents over MQTT.

The public API is what ``__all__`` lists; everything in a module whose name starts with an
underscore, and every name not listed here or in a subpackage's ``__all__``, is private.
Heavy parts (torch, stable-baselines3) are imported on first use, so ``import agents`` and
the ``society`` command stay quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agents.exceptions import (
    BrokerError,
    BusAuthError,
    BusConnectionError,
    BusError,
    BusTlsError,
    CheckpointError,
    ConfigError,
    IncompatiblePolicy,
    LearnerError,
    MessageRejected,
    SocietyError,
)

if TYPE_CHECKING:
    from agents.agent.agent import Agent, AgentConfig, AgentReport
    from agents.broker.managed import ManagedBroker
    from agents.bus.client import BusClient
    from agents.bus.memory import MemoryBroker
    from agents.bus.mqtt import MqttTransport
    from agents.bus.topics import Kind, Topics
    from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
    from agents.learner.learner import Learner, LearnerConfig
    from agents.scenarios import Scenario, load_scenario

__version__ = "0.1.0"

_LAZY = {
    "Agent": "agents.agent.agent",
    "AgentConfig": "agents.agent.agent",
    "AgentReport": "agents.agent.agent",
    "BusClient": "agents.bus.client",
    "Coordinator": "agents.coordinator.coordinator",
    "CoordinatorConfig": "agents.coordinator.coordinator",
    "Kind": "agents.bus.topics",
    "Learner": "agents.learner.learner",
    "LearnerConfig": "agents.learner.learner",
    "ManagedBroker": "agents.broker.managed",
    "MemoryBroker": "agents.bus.memory",
    "MqttTransport": "agents.bus.mqtt",
    "Scenario": "agents.scenarios",
    "Topics": "agents.bus.topics",
    "load_scenario": "agents.scenarios",
}

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentReport",
    "BrokerError",
    "BusAuthError",
    "BusClient",
    "BusConnectionError",
    "BusError",
    "BusTlsError",
    "CheckpointError",
    "ConfigError",
    "Coordinator",
    "CoordinatorConfig",
    "IncompatiblePolicy",
    "Kind",
    "Learner",
    "LearnerConfig",
    "LearnerError",
    "ManagedBroker",
    "MemoryBroker",
    "MessageRejected",
    "MqttTransport",
    "Scenario",
    "SocietyError",
    "Topics",
    "__version__",
    "load_scenario",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'agents' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
