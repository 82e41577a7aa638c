"""`loanbook cost` against real PostgreSQL and DynamoDB Local with seeded history, and a Prometheus stand-in."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from typer.testing import CliRunner

from tests.integration.toolkit.test_migrate_cli import _create_tables, _delete_tables
from tests.support.dynamodb import local_session
from tests.support.toolkit import (
    LOG_SHARDS,
    RETENTION,
    insert_logs,
    insert_payments,
    prepare_postgres,
    toolkit_environment,
)
from toolkit.cli import app
from toolkit.specs import table_specs

runner = CliRunner()
PAYMENTS, LOGS = 120, 300
BILL = [
    "--pg-instance-monthly", "500", "--pg-storage-monthly", "100", "--pg-iops-monthly", "20",
    "--pg-after-instance-monthly", "250", "--pg-after-storage-monthly", "40",
]  # fmt: skip


@pytest.fixture
def environment(postgres_dsn: str, dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Seeded PostgreSQL history (none in DynamoDB yet) and fresh, empty DynamoDB tables; yields the prefix."""

    async def prepare() -> None:
        await prepare_postgres(postgres_dsn)
        pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
        try:
            await insert_payments(pool, PAYMENTS)
            await insert_logs(pool, LOGS)
        finally:
            await pool.close()

    asyncio.run(prepare())
    prefix = f"cost-{os.urandom(4).hex()}"
    for name, value in toolkit_environment(postgres_dsn, dynamodb_endpoint, prefix).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LOANBOOK_MIGRATION_PROMETHEUS_URL", raising=False)
    asyncio.run(_create_tables(dynamodb_endpoint, prefix))
    try:
        yield prefix
    finally:
        asyncio.run(_delete_tables(dynamodb_endpoint, prefix))


def cost_json(*arguments: str) -> dict[str, object]:
    result = runner.invoke(app, ["cost", *BILL, "--json", *arguments])
    assert result.exit_code == 0, result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    return document


def test_figures_from_the_live_system_before_a_backfill(environment: str) -> None:
    document = cost_json("--history-reads-per-day", "5000")
    measured = document["measured"]
    assert isinstance(measured, dict)
    rows = {entry["table"]: entry for entry in measured["postgres"]}
    assert rows["payments"]["rows"] == PAYMENTS
    assert rows["logs"]["rows"] == LOGS
    assert rows["payments"]["table_bytes"] > 0
    assert rows["logs"]["table_bytes"] > 0
    # insert_logs spreads LOGS entries over LOGS * 7 seconds: growth is counted from the rows' own timestamps.
    assert rows["logs"]["rows_per_day"] > LOGS
    sources = {entry["table"]: entry for entry in measured["items"]}
    assert sources["payments"]["source"] == "postgresql"  # DynamoDB is empty: the adapters' items for sampled rows
    assert set(sources["payments"]["bytes_by_kind"]) == {"payment", "marker"}
    assert measured["calls_per_day"]["payments"]["list_for_customer"] == 5000
    tables = document["tables"]
    assert isinstance(tables, list)
    payments = next(t for t in tables if t["name"] == "payments")
    assert payments["items"] >= 2 * PAYMENTS
    by_customer = next(c for c in payments["components"] if c["name"] == "by_customer reads")
    assert by_customer["on_demand_usd"] > 0
    one_off = document["one_off"]
    assert isinstance(one_off, dict)
    assert {entry["table"]: entry["write_units"] for entry in one_off["backfill"]}["payments"] >= 4 * PAYMENTS
    assert document["postgres"] == {"before_usd": 620.0, "after_usd": 290.0}


def test_item_sizes_come_from_dynamodb_once_it_holds_items(environment: str, dynamodb_endpoint: str) -> None:
    async def copy_some() -> None:
        dsn = os.environ["LOANBOOK_MIGRATION_POSTGRES_DSN"]
        connection = await asyncpg.connect(dsn)
        try:
            [spec] = table_specs(["payments"], LOG_SHARDS, RETENTION)
            rows = await spec.read_page(connection, None, None, 10)
        finally:
            await connection.close()
        async with local_session().client("dynamodb", endpoint_url=dynamodb_endpoint) as client:
            for row in rows:
                for item in spec.items(row):
                    await client.put_item(TableName=f"{environment}-payments", Item=item)

    asyncio.run(copy_some())
    measured = cost_json("payments", "--sample", "15")["measured"]
    assert isinstance(measured, dict)
    [items] = measured["items"]
    assert items["source"] == "dynamodb"
    assert items["sampled"] == 15


def test_the_request_mix_from_prometheus(environment: str) -> None:
    """A stand-in answering the store histogram's rate by table, operation and backend, as Prometheus would."""
    queries: list[str] = []

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            queries.append(parse_qs(urlsplit(self.path).query)["query"][0])
            series = [
                ("payments", "list_for_customer", "postgres", 0.5),
                ("payments", "list_for_customer", "dynamodb", 0.25),  # the same calls, dual-written: not added
                ("payments", "get.for_write", "postgres", 0.1),
                ("payments", "create.copy", "dynamodb", 9.0),  # a copy of a write already counted
                ("logs", "query", "postgres", 0.2),
            ]
            body = json.dumps(
                {
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [
                            {
                                "metric": {
                                    "db_collection_name": t,
                                    "db_operation_name": o,
                                    "loanbook_store_backend": b,
                                },
                                "value": [0, str(v)],
                            }
                            for t, o, b, v in series
                        ],
                    },
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        measured = cost_json("--prometheus-url", url, "--log-queries-per-day", "7")["measured"]
    finally:
        server.shutdown()
    assert isinstance(measured, dict)
    mix = measured["calls_per_day"]
    assert mix["payments"]["list_for_customer"] == pytest.approx(0.5 * 86_400)
    assert mix["payments"]["get"] == pytest.approx(0.1 * 86_400)
    assert mix["payments"]["create"] == pytest.approx(measured["postgres"][0]["rows_per_day"])  # from the rows
    assert mix["logs"]["query"] == 7  # an option wins over Prometheus
    assert queries
    assert 'loanbook_route_reason!="shadow"' in queries[0]


def test_the_tables_printed_for_a_person(environment: str) -> None:
    result = runner.invoke(app, ["cost", *BILL])
    assert result.exit_code == 0, result.stderr
    for expected in ("Measured", "Request mix", "payments: month 1", "logs: month 1", "saving", "break-even"):
        assert expected in result.stdout
    assert "no --prometheus-url" in result.stderr


def test_a_missing_bill_option_exits_2(environment: str) -> None:
    result = runner.invoke(app, ["cost", "--pg-instance-monthly", "1"])
    assert result.exit_code == 2
    assert "--pg-storage-monthly: required" in result.stderr
