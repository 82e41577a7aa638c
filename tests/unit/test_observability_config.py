"""The Prometheus rules, the Grafana dashboard and docs/observability.md's catalogue name the same metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "loanbook-migration.json"
OBSERVABILITY = ROOT / "docs" / "observability.md"
RUNBOOK = ROOT / "docs" / "migration-runbook.md"

# Labels Prometheus or the exporter add to every series, whatever the instrument.
COMMON_LABELS = frozenset({"job", "instance", "otel_scope_name", "otel_scope_version"})
SEVERITIES = {"critical", "warning"}


# --- reading the documents ------------------------------------------------------------------------------------------


def section(markdown: str, heading: str) -> str:
    """The text under `## heading`, up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def tables(markdown: str) -> Iterator[list[dict[str, str]]]:
    """Each Markdown table as rows keyed by its header cells."""
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s|:-]+\|$", lines[i + 1]):
            header = cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, cells(lines[i]), strict=True)))
                i += 1
            yield rows
        else:
            i += 1


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(title) for title in re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)}


@cache
def catalogue() -> dict[str, frozenset[str]]:
    """Every Prometheus series docs/observability.md's catalogue documents, with the labels it carries."""
    series: dict[str, frozenset[str]] = {}
    for rows in tables(section(OBSERVABILITY.read_text(), "Metric catalogue")):
        for row in rows:
            (name,) = backticked(row["Prometheus name"])
            labels = frozenset(backticked(row["labels"])) | COMMON_LABELS
            if row["kind"].startswith("histogram"):
                series[f"{name}_bucket"] = labels | {"le"}
                series[f"{name}_sum"] = labels
                series[f"{name}_count"] = labels
            else:
                series[name] = labels
    return series


@cache
def catalogue_rows() -> list[dict[str, str]]:
    return [row for rows in tables(section(OBSERVABILITY.read_text(), "Metric catalogue")) for row in rows]


def known_labels() -> frozenset[str]:
    return frozenset().union(*catalogue().values())


@cache
def rule_groups(name: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load((PROMETHEUS / "rules" / name).read_text())["groups"]
    return groups


def recording_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups("recording.yml") for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups("alerts.yml") for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def query_panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def dashboard_queries() -> list[str]:
    board = dashboard()
    queries = [target["expr"] for panel in query_panels() for target in panel["targets"]]
    queries += [note["expr"] for note in board["annotations"]["list"] if "expr" in note]
    queries += [variable["definition"] for variable in board["templating"]["list"] if variable["type"] == "query"]
    return queries


# --- reading PromQL -------------------------------------------------------------------------------------------------

STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
SELECTOR = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}


def parse(expr: str) -> tuple[set[str], list[tuple[str, set[str]]], set[str]]:
    """The metric names a query reads, each selector's matched labels, and the labels it groups or matches on."""
    text = STRING.sub('""', expr)
    selectors = [(name or "", set(MATCHER_LABEL.findall(body))) for name, body in SELECTOR.findall(text)]
    text = SELECTOR.sub(lambda match: f" {match.group(1) or ''} ", text)
    grouping = {label.strip() for _, names in LABEL_LIST.findall(text) for label in names.split(",") if label.strip()}
    text = LABEL_LIST.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    names = {name for name in IDENTIFIER.findall(text) if name not in KEYWORDS}
    # label_values(metric, label) names a label as its second argument.
    for metric, label in re.findall(r"label_values\(\s*([\w:]+)\s*,\s*(\w+)\s*\)", expr):
        names.discard(label)
        grouping.add(label)
        names.add(metric)
    return names, selectors, grouping


def all_queries() -> list[tuple[str, str]]:
    """(where, query) for every query the rules, the alerts and the dashboard run."""
    queries = [(f"recording rule {rule['record']}", rule["expr"]) for rule in recording_rules()]
    queries += [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    queries += [(f"dashboard query {expr!r}", expr) for expr in dashboard_queries()]
    return queries


def test_the_query_reader_finds_metrics_labels_and_grouping() -> None:
    names, selectors, grouping = parse(
        'sum by (db_collection_name) (rate(x_total{a="1",b=~"$table"}[5m])) / ignoring (c) lvl:y:rate5m offset 15m'
    )
    assert names == {"x_total", "lvl:y:rate5m"}
    assert selectors == [("x_total", {"a", "b"})]
    assert grouping == {"db_collection_name", "c"}


# --- the catalogue --------------------------------------------------------------------------------------------------


def test_the_catalogue_names_follow_the_exporters_naming_rules() -> None:
    rows = catalogue_rows()
    assert len(rows) >= 19
    for row in rows:
        (name,) = backticked(row["Prometheus name"])
        kind = row["kind"]
        if kind.startswith("counter"):
            assert name.endswith("_total"), name
        if kind.endswith(", s"):
            assert name.endswith("_seconds"), name
        if kind.endswith(", ms"):
            assert name.endswith("_milliseconds"), name
        otel = backticked(row["OTel name"])
        if otel:
            stem = otel[0].replace(".", "_")
            assert name.startswith(stem), f"{otel[0]} is not exported as {name}"


# --- rules, alerts and dashboard read only catalogued metrics --------------------------------------------------------


def test_every_recording_rule_reads_catalogued_metrics_or_rules_recorded_before_it() -> None:
    recorded: set[str] = set()
    for rule in recording_rules():
        assert rule["record"].count(":") == 2, f"{rule['record']} is not level:metric:operations"
        names, _, _ = parse(rule["expr"])
        unknown = names - set(catalogue()) - recorded
        assert not unknown, f"recording rule {rule['record']} reads {unknown}: not in docs/observability.md"
        recorded.add(rule["record"])


@pytest.mark.parametrize(("where", "query"), all_queries(), ids=lambda value: str(value)[:60])
def test_every_query_reads_catalogued_metrics_or_recording_rules(where: str, query: str) -> None:
    names, _, _ = parse(query)
    assert names, f"{where} reads no metric"
    unknown = names - set(catalogue()) - {rule["record"] for rule in recording_rules()}
    assert not unknown, f"{where} reads {unknown}: neither in docs/observability.md's catalogue nor recorded"


@pytest.mark.parametrize(("where", "query"), all_queries(), ids=lambda value: str(value)[:60])
def test_every_label_a_query_uses_exists(where: str, query: str) -> None:
    _, selectors, grouping = parse(query)
    for metric, labels in selectors:
        if metric in catalogue():
            assert labels <= catalogue()[metric], f"{where}: {metric} has no label {labels - catalogue()[metric]}"
        else:
            assert labels <= known_labels(), f"{where}: unknown labels {labels - known_labels()}"
    assert grouping <= known_labels() | {"le"}, f"{where}: unknown labels {grouping - known_labels()}"


# --- alerts ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alert", alert_rules(), ids=lambda rule: rule["alert"])
def test_each_alert_has_a_severity_texts_and_a_runbook_section(alert: dict[str, Any]) -> None:
    assert alert["labels"]["severity"] in SEVERITIES
    annotations = alert["annotations"]
    assert annotations["summary"]
    assert annotations["description"]
    path, _, anchor = annotations["runbook"].partition("#")
    assert (ROOT / path).resolve() == RUNBOOK
    assert anchor == slug(alert["alert"]), "the runbook section is named after the alert"
    assert anchor in anchors(RUNBOOK), f"docs/migration-runbook.md has no '### {alert['alert']}'"


@pytest.mark.parametrize("alert", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_texts_quote_label_values_only(alert: dict[str, Any]) -> None:
    for text in alert["annotations"].values():
        for template in re.findall(r"\{\{(.*?)\}\}", text):
            variables = re.findall(r"\$[\w.]+", template)
            assert variables, f"{alert['alert']}: template {template!r} quotes neither a label nor the value"
            for variable in variables:
                assert variable == "$value" or variable.removeprefix("$labels.") in known_labels(), variable


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in sorted((PROMETHEUS / "tests").glob("*.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case["exp_alerts"] else silent).add(case["alertname"])
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested not firing"


def documented(heading: str, column: str) -> set[str]:
    rows = [row for rows in tables(section(OBSERVABILITY.read_text(), heading)) for row in rows if column in row]
    return {backticked(row[column])[0] for row in rows}


def test_every_alert_and_recording_rule_is_documented_and_nothing_more() -> None:
    assert documented("Alerts", "alert") == {rule["alert"] for rule in alert_rules()}
    assert documented("Recording rules", "rule") == {rule["record"] for rule in recording_rules()}


# --- dashboard ------------------------------------------------------------------------------------------------------


def provisioned_datasource_uid() -> str:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (datasource,) = config["datasources"]
    assert datasource["type"] == "prometheus"
    uid: str = datasource["uid"]
    return uid


def test_the_dashboard_is_current_grafana_json_and_every_panel_has_a_query() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    assert query_panels()
    for panel in query_panels():
        assert panel["title"]
        assert panel["gridPos"]["w"] > 0
        assert panel["gridPos"]["h"] > 0
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_the_dashboard_uses_the_provisioned_datasource_by_uid() -> None:
    uid = provisioned_datasource_uid()
    board = dashboard()
    used = [panel["datasource"] for panel in query_panels()]
    used += [target["datasource"] for panel in query_panels() for target in panel["targets"]]
    used += [variable["datasource"] for variable in board["templating"]["list"]]
    used += [note["datasource"] for note in board["annotations"]["list"] if "expr" in note]
    assert all(datasource == {"type": "prometheus", "uid": uid} for datasource in used)


def test_the_dashboard_filters_by_table_and_marks_stage_changes() -> None:
    board = dashboard()
    assert [variable["name"] for variable in board["templating"]["list"]] == ["table"]
    stage_notes = [note["expr"] for note in board["annotations"]["list"] if "expr" in note]
    assert any("changes(" in expr and "stage_index" in expr for expr in stage_notes)
    table_panels = [p for p in query_panels() if any("db_collection_name" in t["expr"] for t in p["targets"])]
    for panel in table_panels:
        assert all("$table" in target["expr"] for target in panel["targets"]), panel["title"]


def test_the_dashboard_shows_every_signal_an_operator_watches() -> None:
    read = set().union(*(parse(query)[0] for query in dashboard_queries()))
    for signal in (
        "table_operation_backend:db_client_operation_duration_seconds:p99_5m",
        "table_error:loanbook_store_fallbacks:rate5m",
        "loanbook_dynamodb_breaker_open",
        "table:loanbook_journal_backlog:max",
        "table:loanbook_journal_oldest_age_seconds:max",
        "table_outcome:loanbook_relay_copies:rate5m",
        "table:loanbook_relay_lag_seconds:p99_5m",
        "table_result:loanbook_shadow_comparisons:rate5m",
        "table:loanbook_shadow_comparisons_mismatch:ratio_rate5m",
        "table:loanbook_migration_stage_index:max",
        "loanbook_dynamodb_consumed_capacity_total",
        "loanbook_log_shipping_sent_total",
        "loanbook_log_shipping_dropped_total",
        "service_method:rpc_server_duration_milliseconds:p99_5m",
        "route_method:http_server_request_duration_seconds:p99_5m",
    ):
        assert signal in read, f"no panel shows {signal}"


# --- scrape configuration and provisioning --------------------------------------------------------------------------


def test_prometheus_scrapes_every_documented_job_and_loads_both_rule_files() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {scrape["job_name"] for scrape in config["scrape_configs"]}
    reaching = section(OBSERVABILITY.read_text(), "Reaching the metrics")
    documented = {backticked(row["job"])[0] for rows in tables(reaching) if "job" in rows[0] for row in rows}
    assert jobs == documented
    loaded = {path.name for pattern in config["rule_files"] for path in PROMETHEUS.glob(pattern)}
    assert loaded == {"alerts.yml", "recording.yml"}


def grafana_mounts() -> dict[str, Path]:
    """Container path -> repository folder, from the mount table in docs/observability.md."""
    mounts = {}
    for rows in tables(section(OBSERVABILITY.read_text(), "The dashboard")):
        for row in rows:
            if "repository folder" in row:
                (folder,) = backticked(row["repository folder"])
                (target,) = backticked(row["mounted in the Grafana container at"])
                mounts[target] = ROOT / folder
    return mounts


def test_the_dashboard_provider_points_at_the_folder_holding_the_dashboard() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "loanbook.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    folder = grafana_mounts()[provider["options"]["path"]]
    assert folder == DASHBOARD.parent
    assert DASHBOARD.exists()


def test_the_provisioning_folder_is_mounted_where_grafana_reads_it() -> None:
    folder = grafana_mounts()["/etc/grafana/provisioning"]
    assert (folder / "datasources" / "prometheus.yml").exists()
    assert (folder / "dashboards" / "loanbook.yml").exists()


# --- links between the observability docs ---------------------------------------------------------------------------


@pytest.mark.parametrize("page", [OBSERVABILITY, RUNBOOK], ids=lambda page: page.name)
def test_links_between_the_pages_land_on_a_heading(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        path, _, anchor = target.partition("#")
        if anchor and not path.startswith(("http:", "https:")):
            linked = (page.parent / path).resolve() if path else page
            assert anchor in anchors(linked), f"{page.name} links to a missing heading: {target}"
