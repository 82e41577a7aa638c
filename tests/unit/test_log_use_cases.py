"""Writing and querying logs: every validation rule, all-or-nothing batches, paging and page tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chassis.errors import InvalidArgument
from chassis.page_tokens import PageTokens
from services.logging.domain import MAX_BATCH_ENTRIES, MAX_VIOLATIONS, EntryCandidate, LogLevel
from services.logging.use_cases import LogUseCases
from tests.support.fakes.log_repository import InMemoryLogRepository

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def candidate(**changes: Any) -> EntryCandidate:
    fields: dict[str, Any] = {
        "id": "",
        "time": NOW - timedelta(minutes=1),
        "service": "loanbook-payment",
        "level": int(LogLevel.INFO),
        "message": "payment recorded",
        "attributes": {"logger": "services.payment"},
        "trace_id": TRACE,
        "span_id": SPAN,
    }
    fields.update(changes)
    return EntryCandidate(**fields)


@pytest.fixture
def store() -> InMemoryLogRepository:
    return InMemoryLogRepository()


@pytest.fixture
def use_cases(store: InMemoryLogRepository) -> LogUseCases:
    return LogUseCases(store, PageTokens("t" * 32, "logging"), timedelta(days=30), now=lambda: NOW)


def violations(error: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {v.field: v.description for v in error.value.violations}


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"time": NOW + timedelta(minutes=6)}, "time", "in the future"),
        ({"time": NOW - timedelta(days=31)}, "time", "retention"),
        ({"service": ""}, "service", "is required"),
        ({"service": "pay ment"}, "service", "only letters"),
        ({"service": "s" * 65}, "service", "at most 64"),
        ({"level": 0}, "level", "must be one of"),
        ({"level": 9}, "level", "must be one of"),
        ({"message": "é" * 4097}, "message", "8192 bytes"),
        ({"message": "ends\x00here"}, "message", "NUL"),
        ({"attributes": {"key": "a\x00b"}}, "attributes['key']", "NUL"),
        ({"attributes": {f"k{n}": "v" for n in range(33)}}, "attributes", "at most 32"),
        ({"attributes": {"key": "v" * 1025}}, "attributes['key']", "1024 bytes"),
        ({"attributes": {"bad key": "v"}}, "attributes['bad key']", "keys are"),
        ({"trace_id": "XYZ"}, "trace_id", "32 lowercase hex"),
        ({"trace_id": "0" * 32}, "trace_id", "all zeros"),
        ({"span_id": "123"}, "span_id", "16 lowercase hex"),
        ({"trace_id": "", "span_id": SPAN}, "span_id", "needs a trace_id"),
        ({"id": "not-a-uuid"}, "id", "must be a UUID"),
    ],
)
async def test_one_bad_entry_rejects_the_whole_batch_naming_its_index_and_field(
    use_cases: LogUseCases, store: InMemoryLogRepository, changes: dict[str, Any], field: str, reason: str
) -> None:
    batch = [candidate(), candidate(), candidate(**changes)]

    with pytest.raises(InvalidArgument) as error:
        await use_cases.write_logs(batch)

    found = violations(error)
    assert list(found) == [f"entries[2].{field}"]
    assert reason in found[f"entries[2].{field}"]
    assert store.entries == {}  # nothing of the batch was stored, not even the good entries


async def test_every_problem_of_every_entry_is_reported_at_once(use_cases: LogUseCases) -> None:
    with pytest.raises(InvalidArgument) as error:
        await use_cases.write_logs([candidate(level=0), candidate(), candidate(service="", message="x" * 9000)])

    assert set(violations(error)) == {"entries[0].level", "entries[2].service", "entries[2].message"}


async def test_a_batch_full_of_errors_reports_a_readable_number_of_them(use_cases: LogUseCases) -> None:
    with pytest.raises(InvalidArgument) as error:
        await use_cases.write_logs([candidate(level=0) for _ in range(200)])

    assert len(error.value.violations) == MAX_VIOLATIONS


@pytest.mark.parametrize("size", [0, MAX_BATCH_ENTRIES + 1])
async def test_an_empty_or_oversized_batch_is_refused(use_cases: LogUseCases, size: int) -> None:
    with pytest.raises(InvalidArgument) as error:
        await use_cases.write_logs([candidate() for _ in range(size)])

    assert list(violations(error)) == ["entries"]


async def test_a_missing_time_or_id_is_filled_in_and_a_slightly_early_clock_is_accepted(
    use_cases: LogUseCases, store: InMemoryLogRepository
) -> None:
    accepted = await use_cases.write_logs([candidate(time=None), candidate(time=NOW + timedelta(minutes=4))])

    assert accepted == 2
    stored = sorted(store.entries.values(), key=lambda entry: entry.time)
    assert stored[0].time == NOW
    assert stored[0].id != stored[1].id


async def test_an_entry_sent_twice_with_its_id_is_stored_once(
    use_cases: LogUseCases, store: InMemoryLogRepository
) -> None:
    entry = candidate(id="0193a000-0000-7000-8000-0000000000aa")
    await use_cases.write_logs([entry])
    await use_cases.write_logs([entry])

    assert len(store.entries) == 1


async def seed_minutes(use_cases: LogUseCases, count: int, **changes: Any) -> None:
    await use_cases.write_logs([candidate(time=NOW - timedelta(minutes=n + 1), **changes) for n in range(count)])


async def test_queries_page_newest_first_until_the_last_page_has_no_token(use_cases: LogUseCases) -> None:
    await seed_minutes(use_cases, 7)
    seen: list[datetime] = []
    token = ""
    for _ in range(10):
        page = await use_cases.query_logs("loanbook-payment", None, None, 0, 3, token)
        seen.extend(entry.time for entry in page.items)
        token = page.next_page_token
        if not token:
            break

    assert seen == [NOW - timedelta(minutes=n + 1) for n in range(7)]


async def test_without_a_range_the_last_hour_is_queried(use_cases: LogUseCases) -> None:
    await use_cases.write_logs(
        [candidate(time=NOW - timedelta(minutes=59)), candidate(time=NOW - timedelta(minutes=61))]
    )

    page = await use_cases.query_logs("loanbook-payment", None, None, 0, 10, "")

    assert [entry.time for entry in page.items] == [NOW - timedelta(minutes=59)]


async def test_a_minimum_level_filters_lower_levels(use_cases: LogUseCases) -> None:
    await use_cases.write_logs([candidate(level=level) for level in (1, 2, 3, 4, 5)])

    page = await use_cases.query_logs("loanbook-payment", None, None, int(LogLevel.ERROR), 10, "")

    assert sorted(entry.level for entry in page.items) == [LogLevel.ERROR, LogLevel.CRITICAL]


@pytest.mark.parametrize(
    ("service", "time_from", "time_to", "min_level", "fields"),
    [
        ("", None, None, 0, {"service"}),
        ("loanbook-payment", NOW, NOW - timedelta(hours=1), 0, {"from_time"}),
        ("loanbook-payment", None, None, 7, {"min_level"}),
        ("bad service", NOW, NOW, 9, {"service", "from_time", "min_level"}),
    ],
)
async def test_bad_queries_name_every_bad_field(
    use_cases: LogUseCases,
    service: str,
    time_from: datetime | None,
    time_to: datetime | None,
    min_level: int,
    fields: set[str],
) -> None:
    with pytest.raises(InvalidArgument) as error:
        await use_cases.query_logs(service, time_from, time_to, min_level, 10, "")

    assert set(violations(error)) == fields


async def test_a_forged_token_or_one_from_another_query_is_refused(use_cases: LogUseCases) -> None:
    await seed_minutes(use_cases, 4)
    page = await use_cases.query_logs("loanbook-payment", None, None, 0, 2, "")
    forged = page.next_page_token[:-3] + ("AAA" if not page.next_page_token.endswith("AAA") else "BBB")

    for service, token in (("loanbook-payment", forged), ("loanbook-customer", page.next_page_token)):
        with pytest.raises(InvalidArgument) as error:
            await use_cases.query_logs(service, None, None, 0, 2, token)
        assert list(violations(error)) == ["page_token"]


async def test_a_trace_is_every_entry_of_it_in_time_order(use_cases: LogUseCases) -> None:
    other = "a" * 32
    await use_cases.write_logs(
        [candidate(time=NOW - timedelta(seconds=s), service=f"svc-{s}") for s in (3, 1, 2)]
        + [candidate(trace_id=other)]
    )

    entries = await use_cases.trace_logs(TRACE)

    assert [entry.service for entry in entries] == ["svc-3", "svc-2", "svc-1"]


async def test_a_malformed_trace_id_is_refused(use_cases: LogUseCases) -> None:
    with pytest.raises(InvalidArgument) as error:
        await use_cases.trace_logs("not-a-trace")

    assert list(violations(error)) == ["trace_id"]
