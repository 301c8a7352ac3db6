"""Grafana's dashboard and Prometheus' alerts ask only for metrics a live coordinator exports.

A real coordinator runs against a real Mosquitto, hears from an agent, and is scraped over
HTTP as Prometheus would. Every metric name in every PromQL query of the dashboard (panels,
template variables, annotations) and of the alert rules must be in that scrape. ``promtool``
(Debian package ``prometheus``) then lints the scrape and checks and unit-tests the rules;
without it those tests are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agents.broker.managed import ManagedBroker
from agents.bus.codec import encode
from agents.bus.mqtt import MqttTransport
from agents.bus.topics import Kind, Topics
from agents.bus.transport import ConnectOptions
from tests import factories
from tests.deploy.live import connected_coordinator

ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "society.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus"
#: Series Prometheus makes itself, not the coordinator: allowed in alert rules only.
PROMETHEUS_SERIES = {"up"}

_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels or keywords)."""
    names = set(re.findall(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,", expr))
    text = re.sub(r"label_values\([^)]*\)", " ", expr)
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', " ", text)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(?!\w)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call is None and name not in _KEYWORDS:
            names.add(name)
    return names


def exported_names(exposition: str) -> set[str]:
    """Every series name a scrape can hold: samples, and what each family's type implies."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.add(family.name)
        if family.type == "counter":
            names.update({f"{family.name}_total", f"{family.name}_created"})
        elif family.type == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count", "_created"))
    return names


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every query of the dashboard."""
    queries: list[tuple[str, str]] = []

    def panels(items: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        queries.extend(
            (f"panel {panel['title']!r} {target['refId']}", target["expr"])
            for target in panel.get("targets", [])
        )
    queries.extend(
        (f"variable {variable['name']}", variable["query"]["query"])
        for variable in dashboard["templating"]["list"]
    )
    queries.extend(
        (f"annotation {annotation['name']}", annotation["expr"])
        for annotation in dashboard["annotations"]["list"]
        if "expr" in annotation
    )
    return queries


def alert_queries() -> list[tuple[str, str]]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [
        (f"alert {rule['alert']}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


@pytest.fixture
async def scrape(mosquitto: ManagedBroker, tmp_path: Path) -> AsyncIterator[str]:
    """The /metrics page of a live coordinator that has heard from one agent."""
    async with connected_coordinator(mosquitto, tmp_path / "coordinator") as coordinator:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        topics = Topics("s")
        transport = MqttTransport(mosquitto.url)
        async with transport.connect(ConnectOptions("a0", clean_session=True)) as agent:
            for kind, message in (
                (Kind.STATUS, factories.status("a0")),
                (Kind.TELEMETRY, factories.telemetry("a0")),
                (Kind.EXPERIENCE, factories.experience("a0")),
                (Kind.POLICY, b"\xc1"),  # malformed: counted by reason
            ):
                payload = message if isinstance(message, bytes) else encode(message)
                await agent.publish(topics.agent("a0", kind), payload, qos=1, retain=False)
        while coordinator.inbox.stats.rejected.get("malformed", 0) < 1:
            assert loop.time() < deadline, "the coordinator did not hear from the agent"
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{coordinator.metrics_port}/metrics"
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url, timeout=5).read().decode()
        )
        yield body


def test_the_name_extraction_sees_metrics_and_only_metrics() -> None:
    expr = (
        'sum by (reason) (rate(society_messages_rejected_total{reason!="x", agent=~"$agent"}'
        "[$__rate_interval])) / on(agent) group_left(env) society_agent_info > bool 0 "
        "and histogram_quantile(0.9, sum by (le) (rate(society_evaluation_seconds_bucket[5m])))"
    )
    assert metric_names(expr) == {
        "society_messages_rejected_total",
        "society_agent_info",
        "society_evaluation_seconds_bucket",
    }
    assert metric_names("label_values(society_agent_info, agent)") == {"society_agent_info"}


async def test_every_dashboard_query_uses_exported_metrics(scrape: str) -> None:
    exported = exported_names(scrape)
    # The scrape is a real one: samples of the agent it heard from are in it.
    assert 'society_agent_env_steps_total{agent="a0"} 1234.0' in scrape
    assert 'society_messages_rejected_total{reason="malformed"} 1.0' in scrape
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    assert len(queries) > 30
    unknown = {
        where: sorted(metric_names(expr) - exported)
        for where, expr in queries
        if metric_names(expr) - exported
    }
    assert not unknown, f"the dashboard asks for metrics the coordinator does not export: {unknown}"
    assert all(metric_names(expr) for _, expr in queries), "a query without any metric"
    # ... and an unknown name would be caught.
    assert metric_names("rate(society_agent_steps_total[5m])") - exported


async def test_every_alert_uses_exported_metrics_and_promtool_likes_the_scrape(
    scrape: str,
) -> None:
    exported = exported_names(scrape) | PROMETHEUS_SERIES
    for where, expr in alert_queries():
        assert metric_names(expr) <= exported, f"{where}: {metric_names(expr) - exported}"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`): scrape not linted")
    done = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=scrape,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_shows_what_the_society_is_watched_by() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(expr) for _, expr in dashboard_queries(dashboard)))
    wanted = {
        # the society at a glance
        "society_agents", "society_agent_steps_per_second", "society_snapshot_evaluations_total",
        "society_agent_env_steps_total", "society_evaluation_queue_length",
        # evaluation next to the baseline
        "society_agent_eval_return", "society_baseline_eval_return",
        "society_agent_regime_eval_return", "society_baseline_regime_eval_return",
        # drifts and the recovery after them
        "society_agent_drift_events_total", "society_agent_adaptations_total",
        "society_lifelong_recovery_steps",
        # the L2M lifelong metrics
        "society_lifelong_performance_maintenance", "society_lifelong_forward_transfer",
        "society_lifelong_backward_transfer", "society_lifelong_relative_performance",
        "society_lifelong_forgetting",
        # what sharing brings
        "society_sharing_gain_ratio", "society_sharing_regret_against_twins_ratio",
        "society_adoptions_total",
        "society_agent_peer_transitions_total", "society_evolution_directives_total",
        # the health of the bus
        "society_messages_received_total", "society_messages_rejected_total",
        "society_messages_duplicate_total", "society_bus_reconnects_total",
        "society_bus_connected",
    }  # fmt: skip
    assert wanted <= used, f"missing from the dashboard: {sorted(wanted - used)}"


def test_the_dashboard_is_well_formed_for_grafana() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    uid = provisioned[0]["uid"]
    assert dashboard["uid"] == "agent-society"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"], panel["id"]
        assert panel["description"], f"{panel['title']}: say what the panel shows"
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for _, expr in dashboard_queries(dashboard):
        for variable in re.findall(r"\$(?!__)(\w+)", expr):
            assert variable in variables, f"unknown dashboard variable ${variable}"
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/society.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    return promtool


def test_promtool_checks_the_prometheus_config_and_rules() -> None:
    promtool = _promtool()
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ):
        done = subprocess.run(
            [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
