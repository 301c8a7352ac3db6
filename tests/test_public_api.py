"""The public API is what ``__all__`` says, and every name in it resolves."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import agents
import agents.bus

PACKAGES = [
    "agents",
    "agents.bus",
    "agents.bus.security",
    "agents.evaluator",
    "agents.exceptions",
    "agents.flags",
    "agents.inspect",
    "agents.report",
    "agents.scenarios",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves(name: str) -> None:
    module = importlib.import_module(name)
    assert len(set(module.__all__)) == len(module.__all__)
    for exported in module.__all__:
        assert getattr(module, exported) is not None, exported


def test_top_level_exports() -> None:
    assert set(agents.__all__) == {
        "Agent", "AgentConfig", "AgentReport", "BrokerError", "BusAuthError", "BusClient",
        "BusConnectionError", "BusError", "BusTlsError", "CheckpointError", "ConfigError",
        "Coordinator", "CoordinatorConfig", "IncompatiblePolicy", "Kind", "Learner",
        "LearnerConfig", "LearnerError", "ManagedBroker", "MemoryBroker", "MessageRejected",
        "MqttTransport", "Scenario", "SocietyError", "Topics", "__version__", "load_scenario",
    }  # fmt: skip


def test_every_project_error_is_a_society_error() -> None:
    for name in agents.exceptions.__all__:
        error = getattr(agents.exceptions, name)
        assert issubclass(error, agents.SocietyError)


def test_importing_the_package_does_not_import_torch() -> None:
    """`society --help` and the bus stay quick: torch loads only where learning happens."""
    code = "import sys, agents, agents.bus, agents.flags, agents.cli; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute"):
        agents.NoSuchThing  # noqa: B018
