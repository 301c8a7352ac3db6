"""The command line is the top floor: nothing else in the package imports it or sees its types."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "agents"
CLI = PACKAGE / "cli"
#: ``python -m agents``: the launcher of the command line, above it as the console script.
LAUNCHER = PACKAGE / "__main__.py"
#: Its own small program (``python -m agents.broker.fallback``), not the ``society`` command.
OWN_PROGRAMS = {PACKAGE / "broker" / "fallback.py"}


def modules() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if CLI not in path.parents and path != LAUNCHER:
            yield path


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, tree: ast.AST) -> Iterator[str]:
    package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def parsed(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


@pytest.mark.parametrize("path", list(modules()), ids=module_name)
def test_nothing_below_the_command_line_imports_it(path: Path) -> None:
    up = [name for name in imported(path, parsed(path)) if name.split(".")[:2] == ["agents", "cli"]]
    assert not up, f"{module_name(path)} imports {up}: hand it typed settings instead"


@pytest.mark.parametrize("path", list(modules()), ids=module_name)
def test_no_namespace_below_the_command_line(path: Path) -> None:
    if path in OWN_PROGRAMS:
        return
    tree = parsed(path)
    names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert "Namespace" not in names, f"{module_name(path)} takes an argparse.Namespace"


@pytest.mark.parametrize("path", list(modules()), ids=module_name)
def test_every_command_lives_in_the_cli(path: Path) -> None:
    commands = [
        node.name
        for node in ast.walk(parsed(path))
        if isinstance(node, ast.FunctionDef) and node.name.startswith("cmd_")
    ]
    assert not commands, f"{module_name(path)} defines {commands}; commands go in agents/cli"


def test_the_walk_sees_the_package() -> None:
    names = {module_name(path) for path in modules()}
    assert {"agents.orchestrator.plan", "agents.inspect", "agents.report", "agents.flags"} <= names
    assert not any(name.startswith("agents.cli") for name in names)
    # The check itself finds an upward import, relative or absolute.
    fake = PACKAGE / "orchestrator" / "fake.py"
    for source in (
        "from agents.cli.options import x",
        "from ..cli import main",
        "import agents.cli",
    ):
        assert any(name.startswith("agents.cli") for name in imported(fake, ast.parse(source)))


CORE = (PACKAGE / "agent", PACKAGE / "coordinator")


@pytest.mark.parametrize(
    "path", [p for p in modules() if any(core in p.parents for core in CORE)], ids=module_name
)
def test_agents_and_the_coordinator_do_not_know_the_integrations(path: Path) -> None:
    known = [
        name
        for name in imported(path, parsed(path))
        if name.split(".")[:2] == ["agents", "integrations"]
    ]
    assert not known, f"{module_name(path)} imports {known}: integrations plug in as hooks"
