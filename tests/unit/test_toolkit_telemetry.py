"""The `loanbook` command traces each run by its subcommands only and reports table jobs' progress as metrics."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from typer.main import get_command

from tests.support.metrics import metric_reader, points, total
from tests.support.spans import collected_spans
from toolkit.backfill import NoProgress
from toolkit.cli import app
from toolkit.telemetry import MeteredProgress, command_path, count_differences, traced_command


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return collected_spans()


def test_the_command_path_names_subcommands_never_arguments_or_option_values() -> None:
    group = get_command(app)

    argv = ["migrate", "switch", "payments", "dynamo_live", "--reason", "Casey asked", "--dsn", "postgresql://x:pw@h/d"]
    assert command_path(group, argv) == ["migrate", "switch"]
    assert command_path(group, ["--help"]) == []
    assert command_path(group, ["seed", "--payments", "10"]) == ["seed"]


def test_a_command_span_records_its_exit_code_and_fails_on_a_non_zero_one(spans: InMemorySpanExporter) -> None:
    spans.clear()
    with pytest.raises(SystemExit), traced_command(["migrate", "status"]):
        raise SystemExit(0)
    with pytest.raises(SystemExit), traced_command(["migrate", "switch"]):
        raise SystemExit(2)

    ok, refused = spans.get_finished_spans()
    assert (ok.name, ok.attributes, ok.status.status_code) == (
        "loanbook migrate status",
        {"process.command": "loanbook migrate status", "process.exit.code": 0},
        StatusCode.UNSET,
    )
    assert refused.attributes is not None
    assert refused.attributes["process.exit.code"] == 2
    assert refused.status.status_code is StatusCode.ERROR


def test_progress_reaches_the_inner_sink_and_the_metrics() -> None:
    metric_reader()
    before = total("loanbook.toolkit.items", loanbook__job="backfill", db__collection__name="payments")
    progress = MeteredProgress("backfill", NoProgress(), outcome="copied")

    progress.start("payments", total=1000, done=200)
    progress.advance("payments", 300)
    [gauge] = points("loanbook.toolkit.progress", loanbook__job="backfill", db__collection__name="payments")
    assert gauge.value == pytest.approx(0.5)  # type: ignore[union-attr]
    progress.advance("payments", 700)  # rows written since the count: the total follows
    [gauge] = points("loanbook.toolkit.progress", loanbook__job="backfill", db__collection__name="payments")
    assert gauge.value == pytest.approx(1.0)  # type: ignore[union-attr]

    copied = total("loanbook.toolkit.items", loanbook__job="backfill", db__collection__name="payments")
    assert copied - before == 1000


def test_differences_are_counted_by_kind() -> None:
    metric_reader()
    before = total("loanbook.toolkit.items", loanbook__job="verify", loanbook__outcome="missing")

    count_differences("verify", "logs", "missing", 3)

    assert total("loanbook.toolkit.items", loanbook__job="verify", loanbook__outcome="missing") - before == 3
