"""The gateway's log routes against the real processes: batches in, pages by service, time and level out, traces,
refusals naming entry and field, and who may write or read."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from chassis.identity import Role
from tests.support.rest import assert_error, bearer, rfc3339
from tests.support.system import RunningSystem

NOW = datetime.now(UTC).replace(microsecond=0)
LEVELS = ["LOG_LEVEL_DEBUG", "LOG_LEVEL_INFO", "LOG_LEVEL_WARNING", "LOG_LEVEL_ERROR", "LOG_LEVEL_CRITICAL"]


@pytest.fixture(scope="module")
async def client(running_system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running_system.gateway_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def shipper(running_system: RunningSystem) -> dict[str, str]:
    return bearer(running_system, Role.SERVICE)


@pytest.fixture(scope="module")
def sre(running_system: RunningSystem) -> dict[str, str]:
    return bearer(running_system, Role.OFFICER)


def a_service() -> str:
    return f"gw-e2e-{secrets.token_hex(4)}"


def an_entry(service: str, seconds_ago: int, level: str = "LOG_LEVEL_INFO", **fields: Any) -> dict[str, Any]:
    return {
        "service": service,
        "time": rfc3339(NOW - timedelta(seconds=seconds_ago)),
        "level": level,
        "message": f"{seconds_ago} s ago",
        **fields,
    }


async def write(client: httpx.AsyncClient, headers: dict[str, str], entries: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/logs", json={"entries": entries}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"acceptedCount": len(entries)}


async def read_all(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every page of a query, following nextPageToken; asserts each page respects pageSize."""
    found: list[dict[str, Any]] = []
    token = ""
    for _ in range(100):
        response = await client.get("/v1/logs", params={**params, "pageToken": token}, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["entries"]) <= params["pageSize"]
        found.extend(page["entries"])
        token = page["nextPageToken"]
        if not token:
            return found
    raise AssertionError("paging did not end")


async def test_a_batch_is_read_back_newest_first_by_page_within_the_window_and_by_level(
    client: httpx.AsyncClient, shipper: dict[str, str], sre: dict[str, str]
) -> None:
    service = a_service()
    await write(client, shipper, [an_entry(service, n, LEVELS[n % 5], attributes={"n": str(n)}) for n in range(23)])
    window = {
        "service": service,
        "from": rfc3339(NOW - timedelta(minutes=5)),
        "to": rfc3339(NOW + timedelta(seconds=1)),
    }

    everything = await read_all(client, sre, **window, pageSize=5)
    serious = await read_all(client, sre, **window, pageSize=4, minLevel="LOG_LEVEL_ERROR")
    # `to` is exclusive and `from` inclusive: entries 10 s to 5 s ago, minus the one exactly 5 s ago.
    middle = await read_all(
        client,
        sre,
        service=service,
        pageSize=50,
        **{"from": rfc3339(NOW - timedelta(seconds=10)), "to": rfc3339(NOW - timedelta(seconds=5))},
    )
    by_default = await read_all(client, sre, service=service, pageSize=50)  # the hour before now

    assert [e["attributes"]["n"] for e in everything] == [str(n) for n in range(23)]
    first = everything[0]
    assert first["service"] == service
    assert first["level"] == "LOG_LEVEL_DEBUG"
    assert first["message"] == "0 s ago"
    assert first["time"] == rfc3339(NOW)
    assert first["id"]
    assert (first["traceId"], first["spanId"]) == ("", "")
    assert [e["attributes"]["n"] for e in serious] == [str(n) for n in range(23) if n % 5 >= 3]
    assert [e["attributes"]["n"] for e in middle] == [str(n) for n in range(6, 11)]
    assert len(by_default) == 23


async def test_a_trace_gathers_every_service_in_time_order_and_service_or_level_narrow_it(
    client: httpx.AsyncClient, shipper: dict[str, str], running_system: RunningSystem
) -> None:
    trace_id = secrets.token_hex(16)
    gateway, payment = a_service(), a_service()
    await write(client, shipper, [an_entry(payment, 1, "LOG_LEVEL_ERROR", traceId=trace_id, spanId="b" * 16)])
    await write(client, shipper, [an_entry(gateway, 3, traceId=trace_id), an_entry(gateway, 2), an_entry(gateway, 4)])
    admin = bearer(running_system, Role.ADMIN)

    whole = await client.get("/v1/logs", params={"traceId": trace_id}, headers=admin)
    of_gateway = await client.get("/v1/logs", params={"traceId": trace_id, "service": gateway}, headers=admin)
    errors = await client.get("/v1/logs", params={"traceId": trace_id, "minLevel": "LOG_LEVEL_ERROR"}, headers=admin)

    assert whole.status_code == 200, whole.text
    assert whole.json()["nextPageToken"] == ""
    assert [(e["service"], e["message"]) for e in whole.json()["entries"]] == [
        (gateway, "3 s ago"),
        (payment, "1 s ago"),
    ]
    assert whole.json()["entries"][1]["spanId"] == "b" * 16
    assert [e["service"] for e in of_gateway.json()["entries"]] == [gateway]
    assert [e["service"] for e in errors.json()["entries"]] == [payment]


@pytest.mark.parametrize(
    "parameter", [{"from": rfc3339(NOW)}, {"to": rfc3339(NOW)}, {"pageSize": 10}, {"pageToken": "abc"}]
)
async def test_paging_or_a_time_window_next_to_a_trace_id_is_400_naming_the_parameter(
    client: httpx.AsyncClient, sre: dict[str, str], parameter: dict[str, Any]
) -> None:
    response = await client.get("/v1/logs", params={"traceId": "a" * 32, **parameter}, headers=sre)

    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert [d["field"] for d in error["details"]] == list(parameter)  # type: ignore[attr-defined]
    assert "traceId" in error["details"][0]["description"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "service"),
        ({"service": "bad name!"}, "service"),
        ({"service": "s", "from": "yesterday"}, "from"),
        ({"service": "s", "to": "2026-01-01T00:00:00"}, "to"),  # no time zone
        ({"service": "s", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"service": "s", "from": rfc3339(NOW + timedelta(hours=3))}, "from"),  # after the default `to` (now)
        ({"service": "s", "minLevel": "LOUD"}, "minLevel"),
        ({"service": "s", "pageSize": -1}, "pageSize"),
        ({"service": "s", "pageToken": "forged"}, "pageToken"),
        ({"traceId": "ABC"}, "traceId"),
    ],
)
async def test_a_bad_query_is_400_naming_the_query_parameter(
    client: httpx.AsyncClient, sre: dict[str, str], params: dict[str, Any], field: str
) -> None:
    response = await client.get("/v1/logs", params=params, headers=sre)

    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert [d["field"] for d in error["details"]] == [field]  # type: ignore[attr-defined]


async def test_bad_entries_refuse_the_whole_batch_naming_each_entry_index_and_field(
    client: httpx.AsyncClient, shipper: dict[str, str], sre: dict[str, str]
) -> None:
    service = a_service()
    # Found by the logging service's batch rules, passed through in the REST body's JSON names.
    by_service = [
        an_entry(service, 1),
        an_entry(service, 2, traceId="XYZ"),
        an_entry("", 3, message="x" * 10_000),
        an_entry(service, 4, attributes={"bad key!": "v"}),
    ]
    # Found by the gateway's HTTP shape check, in the same path notation.
    by_gateway = [an_entry(service, 1), an_entry(service, 2, level="LOUD"), an_entry(service, 3, time="2026-01-01")]

    refused = await client.post("/v1/logs", json={"entries": by_service}, headers=shipper)
    malformed = await client.post("/v1/logs", json={"entries": by_gateway}, headers=shipper)
    empty = await client.post("/v1/logs", json={"entries": []}, headers=shipper)
    stored = await client.get("/v1/logs", params={"service": service}, headers=sre)

    error = assert_error(refused, 400, "INVALID_ARGUMENT")
    assert [d["field"] for d in error["details"]] == [  # type: ignore[attr-defined]
        "entries[1].traceId",
        "entries[2].service",
        "entries[2].message",
        "entries[3].attributes['bad key!']",
    ]
    shape = assert_error(malformed, 400, "INVALID_ARGUMENT")
    assert [d["field"] for d in shape["details"]] == ["entries[1].level", "entries[2].time"]  # type: ignore[attr-defined]
    assert [d["field"] for d in assert_error(empty, 400, "INVALID_ARGUMENT")["details"]] == ["entries"]  # type: ignore[attr-defined]
    assert stored.json()["entries"] == []  # the good entries were not stored either
    assert "x" * 100 not in refused.text  # the caller's data is not echoed back


async def test_a_time_without_a_zone_is_reported_with_every_other_problem_of_the_batch(
    client: httpx.AsyncClient, shipper: dict[str, str], sre: dict[str, str]
) -> None:
    service = a_service()
    batch = [
        an_entry(service, 1),
        an_entry(service, 2, traceId="XYZ"),
        an_entry(service, 3, spanId="abc"),
        an_entry("", 4),
        an_entry(service, 5, message="x" * 10_000),
        an_entry(service, 6, attributes={"bad key!": "v"}),
        an_entry(service, 7, id="not-a-uuid"),
        an_entry("bad service!", 8),
        an_entry(service, 9, time=rfc3339(NOW + timedelta(hours=2))),
        # The gateway's shape check refuses this one; the eight problems above are the logging service's.
        an_entry("", 10, time=(NOW - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%S")),
    ]

    refused = await client.post("/v1/logs", json={"entries": batch}, headers=shipper)
    stored = await client.get("/v1/logs", params={"service": service}, headers=sre)

    error = assert_error(refused, 400, "INVALID_ARGUMENT")
    fields = [d["field"] for d in error["details"]]  # type: ignore[attr-defined]
    assert fields == [
        "entries[1].traceId",
        "entries[2].spanId",
        "entries[3].service",
        "entries[4].message",
        "entries[5].attributes['bad key!']",
        "entries[6].id",
        "entries[7].service",
        "entries[8].time",
        "entries[9].time",
        "entries[9].service",
    ]
    assert error["message"] == f"invalid request: {', '.join(fields)}"
    assert stored.json()["entries"] == []  # the good entry was not stored either


async def test_only_the_service_role_writes_and_only_officers_and_admins_read(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    service = a_service()
    batch = {"entries": [an_entry(service, 1)]}
    query = {"service": service}
    tokens = {
        "customer": bearer(running_system, Role.CUSTOMER, "0193a000-0000-7000-8000-000000000c01"),
        "officer": bearer(running_system, Role.OFFICER),
        "admin": bearer(running_system, Role.ADMIN),
        "service": bearer(running_system, Role.SERVICE),
    }

    writes = {role: await client.post("/v1/logs", json=batch, headers=h) for role, h in tokens.items()}
    reads = {role: await client.get("/v1/logs", params=query, headers=h) for role, h in tokens.items()}
    anonymous_write = await client.post("/v1/logs", json=batch)
    anonymous_read = await client.get("/v1/logs", params=query)

    assert {role: r.status_code for role, r in writes.items()} == {
        "customer": 403,
        "officer": 403,
        "admin": 403,
        "service": 200,
    }
    assert {role: r.status_code for role, r in reads.items()} == {
        "customer": 403,
        "officer": 200,
        "admin": 200,
        "service": 403,
    }
    for refused in (writes["customer"], writes["admin"], reads["customer"], reads["service"]):
        assert_error(refused, 403, "PERMISSION_DENIED")
    assert_error(anonymous_write, 401, "UNAUTHENTICATED")
    assert_error(anonymous_read, 401, "UNAUTHENTICATED")
    assert len(reads["officer"].json()["entries"]) == 1  # written once: the refused writes stored nothing


async def test_a_request_through_the_gateway_can_be_found_by_the_trace_id_it_answers_with(
    client: httpx.AsyncClient, shipper: dict[str, str], sre: dict[str, str]
) -> None:
    # A client hands X-Trace-Id to an SRE; a shipper that logged under that trace makes the lines findable.
    service = a_service()
    written = await client.post("/v1/logs", json={"entries": [an_entry(service, 1)]}, headers=shipper)
    trace_id = written.headers["X-Trace-Id"]
    await write(client, shipper, [an_entry(service, 0, traceId=trace_id)])

    found = await client.get("/v1/logs", params={"traceId": trace_id}, headers=sre)

    entries = found.json()["entries"]
    assert [e["service"] for e in entries if e["service"] == service] == [service]
    # Lines the gateway itself shipped under that trace (its access line) belong to the request too.
    assert {e["service"] for e in entries} <= {service, "loanbook-gateway"}
    assert all(e["traceId"] == trace_id for e in entries)


async def test_the_openapi_document_describes_the_log_routes(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()

    read = document["paths"]["/v1/logs"]["get"]
    parameters = {p["name"] for p in read["parameters"]}
    assert {"post", "get"} <= set(document["paths"]["/v1/logs"])
    assert parameters == {"service", "from", "to", "minLevel", "traceId", "pageSize", "pageToken"}
    assert {"400", "401", "403"} <= set(read["responses"])
    assert "traceId" in read["description"]
