"""The control plane: each table's live stage in PostgreSQL, changed with an audit row and a NOTIFY."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from chassis.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from migration.journal import current_traceparent
from migration.observability import ATTR_COLLECTION, ATTR_FROM_STAGE, error_type, mark_failed
from migration.stages import ORDER, TABLES, Backend, Stage, TableMode, stage_from_seed_flags
from migration.verifications import Standing, latest_standing

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("loanbook.migration")

# A connection as a pool hands it out; guards run inside the change's transaction on it.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

CHANNEL = "loanbook_migration_modes"
ATTR_TO_STAGE = "loanbook.migration.to_stage"
ATTR_TO_FALLBACK = "loanbook.migration.to_fallback"
DEFAULT_MODE = {"stage": Stage.POSTGRES_ONLY, "fallback": True}

# Checks a change before it is made: (connection, current, wanted) -> None, or raise FailedPrecondition.
Guard = Callable[["Connection", TableMode, TableMode], Awaitable[None]]


@dataclass(frozen=True)
class ModeChange:
    table: str
    from_stage: Stage | None
    to_stage: Stage
    from_fallback: bool | None
    to_fallback: bool
    changed_by: str
    reason: str
    changed_at: datetime


@dataclass(frozen=True)
class ModeRecord:
    """A table's mode with who changed it last and when, as the control plane stores it."""

    mode: TableMode
    updated_at: datetime
    updated_by: str


def _record(row: asyncpg.Record) -> ModeRecord:
    return ModeRecord(_mode(row), row["updated_at"], row["updated_by"])


def _mode(row: asyncpg.Record) -> TableMode:
    return TableMode(row["table_name"], Stage(row["stage"]), row["fallback"], row["revision"])


def parse_stage(value: str, field: str = "stage") -> Stage:
    try:
        return Stage(value)
    except ValueError:
        choices = ", ".join(stage.value for stage in Stage)
        raise InvalidArgument([FieldViolation(field, f"unknown stage {value!r}; one of {choices}")]) from None


def check_table(table: str) -> str:
    if table not in TABLES:
        raise InvalidArgument([FieldViolation("table", f"unknown table {table!r}; one of {', '.join(TABLES)}")])
    return table


async def require_clean_full_verification(connection: Connection, current: TableMode, wanted: TableMode) -> None:
    """Invariant 5: PostgreSQL stops receiving writes only after a clean, full verification."""
    if wanted.stage is not Stage.DYNAMO_ONLY or current.stage is Stage.DYNAMO_ONLY:
        return
    latest = await latest_standing(connection, wanted.table)
    if latest is None or not (latest.clean and latest.full):
        raise FailedPrecondition(
            f"{wanted.table}: moving to dynamo_only needs a clean full verification first, or a clean incremental "
            f"one with an unbroken chain back to one{_broken(latest)} (run `loanbook migrate verify "
            f"{wanted.table}`); PostgreSQL would stop receiving writes"
        )


def _broken(latest: Standing | None) -> str:
    if latest is None or latest.broken is None or not latest.incremental:
        return ""
    return f": verification {latest.id} is incremental and its chain is broken ({latest.broken})"


async def require_verification_after_backfill(connection: Connection, current: TableMode, wanted: TableMode) -> None:
    """From dynamo_live on DynamoDB serves reads, and only keys with a pending journal entry are routed to PostgreSQL:
    rows the journal never saw (written before dual_write, or in a later spell in postgres_only) must already be in
    DynamoDB. First prove the copy is whole with a clean verification that started after the last backfill finished
    and after the table last left postgres_only (and no backfill half-done). Going back needs nothing."""
    if ORDER.index(wanted.stage) <= max(ORDER.index(Stage.SHADOW), ORDER.index(current.stage)):
        return
    if current.stage is Stage.POSTGRES_ONLY:
        # Every write so far reached PostgreSQL alone: no verification from before can vouch for DynamoDB.
        raise FailedPrecondition(
            f"{wanted.table}: from postgres_only, go to dual_write first (`loanbook migrate switch {wanted.table} "
            f"dual_write`), then backfill and verify before moving to {wanted.stage.value}"
        )
    unfinished = await connection.fetchrow(
        "SELECT id, started_at FROM migration.backfill_runs WHERE table_name = $1 AND status = 'running'",
        wanted.table,
    )
    if unfinished is not None:
        raise FailedPrecondition(
            f"{wanted.table}: backfill run {unfinished['id']} (started "
            f"{unfinished['started_at']:%Y-%m-%d %H:%M:%S %Z}) is unfinished; resume it with "
            f"`loanbook migrate backfill {wanted.table}` and verify before moving to {wanted.stage.value}"
        )
    backfill = await connection.fetchrow(
        """SELECT started_at, finished_at FROM migration.backfill_runs WHERE table_name = $1 AND status = 'finished'
           ORDER BY finished_at DESC LIMIT 1""",
        wanted.table,
    )
    last_backfill = None if backfill is None else backfill["finished_at"]
    latest = await latest_standing(connection, wanted.table)
    if latest is None or not latest.clean or (latest.incremental and latest.broken is not None):
        found = "no verification yet" if latest is None else "the latest verification found differences"
        if latest is not None and latest.clean:
            found = f"verification {latest.id} is incremental and its chain is broken: {latest.broken}"
        raise FailedPrecondition(
            f"{wanted.table}: moving to {wanted.stage.value} needs a clean verification ({found}); "
            f"run `loanbook migrate verify {wanted.table}`"
        )
    # An incremental verification vouches for what its chain's full verification did, from that one's start.
    if last_backfill is not None and latest.started_at < last_backfill:
        raise FailedPrecondition(
            f"{wanted.table}: the latest clean verification started before the last backfill finished "
            f"({last_backfill:%Y-%m-%d %H:%M:%S %Z}); run `loanbook migrate verify {wanted.table}` again before "
            f"moving to {wanted.stage.value}"
        )
    # A backfill or verification from before a spell in postgres_only proves nothing about the writes made in it:
    # they reached PostgreSQL alone, with no journal entry for the relay to copy. (The backfill's own settle wait
    # also covers replicas still writing as in postgres_only just after the switch; a verification's does not.)
    since = await dynamo_receives_writes_since(connection, wanted.table)
    stale_backfill = backfill is not None and since is not None and backfill["started_at"] < since["changed_at"]
    if since is not None and (stale_backfill or latest.started_at < since["changed_at"]):
        raise FailedPrecondition(
            f"{wanted.table}: the last {'backfill' if stale_backfill else 'clean verification'} started before "
            "the table left postgres_only "
            f"({since['changed_at']:%Y-%m-%d %H:%M:%S %Z}, to {since['to_stage']}); writes made in postgres_only "
            f"are only in PostgreSQL: run `loanbook migrate backfill {wanted.table}` and `loanbook migrate verify "
            f"{wanted.table}` before moving to {wanted.stage.value}"
        )


async def dynamo_receives_writes_since(connection: Connection | asyncpg.Pool, table: str) -> asyncpg.Record | None:
    """The latest move out of postgres_only (changed_at, to_stage), or the initial mode if that was already past
    it: while the table is past postgres_only, DynamoDB has received every write since. None if the table never
    left postgres_only. (In postgres_only now, it is the last spell's move: callers check the stage first.)"""
    return await connection.fetchrow(
        """SELECT changed_at, to_stage FROM migration.mode_changes
           WHERE table_name = $1 AND to_stage <> 'postgres_only'
             AND (from_stage IS NULL OR from_stage = 'postgres_only')
           ORDER BY id DESC LIMIT 1""",
        table,
    )


# How often a switch to dynamo_only looks at the journal again while it waits for it to drain.
DRAIN_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class JournalDrain:
    """A bounded wait for a table's journal to drain before a switch to dynamo_only."""

    newest: int | None  # the newest entry pending when the wait began (None: none was)
    seconds: float  # how long it waited


# The wait that ControlPlane.change made before the transaction whose guards run now (None: it made none).
_drain: ContextVar[JournalDrain | None] = ContextVar("journal_drain", default=None)


async def _undrained(executor: Connection | asyncpg.Pool, table: str, drain: JournalDrain | None) -> asyncpg.Record:
    """The entries that keep the journal from counting as drained: after a wait, those pending when it began and
    any whose copy has failed (the relay recorded an error); without one, every entry."""
    row = await executor.fetchrow(
        """SELECT count(*) AS pending, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest
           FROM migration.journal
           WHERE table_name = $1 AND (NOT $2 OR id <= $3 OR last_error IS NOT NULL)""",
        table,
        drain is not None,
        None if drain is None else drain.newest,
    )
    assert row is not None
    return row


async def wait_for_drained_journal(
    pool: asyncpg.Pool, table: str, seconds: float, waiting: Callable[[str], None] | None = None
) -> JournalDrain:
    """Waits up to `seconds` until the entries pending now have been copied to DynamoDB (and none has failed a copy),
    polling the journal; says once through `waiting` what it waits for. Under steady writes the journal is never
    empty (each write's entry lives until its inline copy lands), so entries journaled during the wait are writes in
    flight, not a backlog: their inline copy (or the relay) finishes them."""
    started = time.monotonic()
    newest: int | None = await pool.fetchval("SELECT max(id) FROM migration.journal WHERE table_name = $1", table)
    drain = JournalDrain(newest, 0.0)
    said = False
    while True:
        undrained = await _undrained(pool, table, drain)
        waited = time.monotonic() - started
        drain = JournalDrain(newest, waited)
        if not undrained["pending"] or waited >= seconds:
            return drain
        if waiting is not None and not said:
            waiting(
                f"{table}: waiting up to {seconds:g} s for {undrained['pending']} journaled writes to reach "
                f"DynamoDB (oldest {float(undrained['oldest']):.1f} s)"
            )
            said = True
        await asyncio.sleep(min(DRAIN_POLL_SECONDS, seconds - waited))


async def require_drained_journal(connection: Connection, current: TableMode, wanted: TableMode) -> None:
    """In dynamo_only PostgreSQL stops receiving writes, so no read can be routed there: every journaled write must
    be in DynamoDB first. ControlPlane.change waits (bounded, before it locks the mode) for the entries pending when
    the switch was asked; this refuses if any of them, or any entry whose copy has failed, is still there."""
    if wanted.stage is not Stage.DYNAMO_ONLY or current.stage is Stage.DYNAMO_ONLY:
        return
    drain = _drain.get()
    undrained = await _undrained(connection, wanted.table, drain)
    if undrained["pending"]:
        pending = (
            f"{wanted.table}: {undrained['pending']} journaled writes are not in DynamoDB yet (oldest "
            f"{float(undrained['oldest']):.1f} s)"
        )
        if drain is None:
            raise FailedPrecondition(
                f"{pending}; wait until the relay drains the journal (`loanbook migrate "
                "status`) before moving to dynamo_only"
            )
        raise FailedPrecondition(
            f"{pending} after waiting {drain.seconds:.1f} s for the journal to drain; see why the relay cannot copy "
            "them (`loanbook migrate status`: retrying entries; the services' relay warnings) and switch again"
        )


def answers_from_postgres(mode: TableMode) -> bool:
    """Whether PostgreSQL answers some reads in this mode: it serves them, or reads fall back to it."""
    policy = mode.policy
    return policy.serves is Backend.POSTGRES or (mode.fallback and policy.fallback_possible)


async def reverse_sync_pending(connection: Connection | asyncpg.Pool, table: str) -> str | None:
    """Why PostgreSQL may still lack writes made in dynamo_only, or None when it holds them all.

    After the latest switch out of dynamo_only, PostgreSQL holds every write once a reverse sync covering that switch
    has finished without conflicts and a clean full verification has started after that sync finished.
    """
    left = await connection.fetchrow(
        """SELECT id, changed_at FROM migration.mode_changes
           WHERE table_name = $1 AND from_stage = 'dynamo_only' AND to_stage <> 'dynamo_only'
           ORDER BY id DESC LIMIT 1""",
        table,
    )
    if left is None:
        return None
    synced = await connection.fetchrow(
        """SELECT id, finished_at FROM migration.reverse_syncs
           WHERE table_name = $1 AND covers_change = $2 AND status = 'finished' AND conflicts = 0
           ORDER BY id DESC LIMIT 1""",
        table,
        left["id"],
    )
    if synced is None:
        return (
            f"{table}: PostgreSQL received no writes while the table was in dynamo_only (left at "
            f"{left['changed_at']:%Y-%m-%d %H:%M:%S %Z}); copy them back first with `loanbook migrate reverse-sync "
            f"{table}` (or `loanbook migrate rollback {table}`, which runs it)"
        )
    # Any clean full verification since settles it: later ones that differ are about DynamoDB lagging (e.g. a new
    # backfill), while PostgreSQL has received every write since the switch.
    confirmed = await connection.fetchval(
        """SELECT EXISTS (SELECT 1 FROM migration.verifications
                          WHERE table_name = $1 AND clean AND full_scan AND started_at >= $2)""",
        table,
        synced["finished_at"],
    )
    if not confirmed:
        return (
            f"{table}: reverse sync {synced['id']} copied DynamoDB's items back into PostgreSQL; a clean full "
            f"verification that starts after it (`loanbook migrate verify {table}`) must confirm it first"
        )
    return None


async def require_reverse_sync_after_dynamo_only(connection: Connection, current: TableMode, wanted: TableMode) -> None:
    """Leaving dynamo_only, PostgreSQL lacks the writes made in it: it answers no read (neither serves nor is fallen
    back to) until a reverse sync has copied them back and a clean full verification has confirmed it."""
    if not answers_from_postgres(wanted):
        return
    if current.stage is Stage.DYNAMO_ONLY:
        raise FailedPrecondition(
            f"{wanted.table}: from dynamo_only, go to dynamo_primary with fallback off first (PostgreSQL lacks the "
            f"writes made in dynamo_only): `loanbook migrate rollback {wanted.table}` does that, copies them back "
            "and verifies"
        )
    reason = await reverse_sync_pending(connection, wanted.table)
    if reason is not None:
        raise FailedPrecondition(
            f"{reason}; until then PostgreSQL must not answer reads ({wanted.stage.value}, "
            f"fallback {'on' if wanted.fallback else 'off'})"
        )


# Every change through the control plane (the CLI and the gateway's admin route alike) passes these.
DEFAULT_GUARDS: tuple[Guard, ...] = (
    require_clean_full_verification,
    require_verification_after_backfill,
    require_drained_journal,
    require_reverse_sync_after_dynamo_only,
)


class ControlPlane:
    """Reads and changes table modes. Every replica learns of a change through LISTEN (see ModeWatcher)."""

    def __init__(self, pool: asyncpg.Pool, guards: tuple[Guard, ...] = DEFAULT_GUARDS) -> None:
        self._pool = pool
        self._guards = guards

    async def seed(self, modes: Mapping[str, TableMode], who: str) -> list[str]:
        """Create the modes of tables that have none yet; existing modes are left alone. Returns the created."""
        created = []
        async with self._pool.acquire() as connection, connection.transaction():
            for table, mode in modes.items():
                inserted = await connection.fetchval(
                    """INSERT INTO migration.table_modes (table_name, stage, fallback, updated_by)
                       VALUES ($1, $2, $3, $4) ON CONFLICT (table_name) DO NOTHING RETURNING table_name""",
                    check_table(table),
                    mode.stage.value,
                    mode.fallback,
                    who,
                )
                if inserted:
                    await connection.execute(
                        """INSERT INTO migration.mode_changes (table_name, to_stage, to_fallback, changed_by, reason)
                           VALUES ($1, $2, $3, $4, 'initial mode')""",
                        table,
                        mode.stage.value,
                        mode.fallback,
                        who,
                    )
                    await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps({"table": table}))
                    created.append(table)
        return created

    async def ensure_defaults(self, who: str, tables: Sequence[str] = TABLES) -> list[str]:
        """Give every migrated table (of `tables`) without a mode the default one (postgres_only, fallback on) —
        what the replicas already assume for it — so it can be listed and switched like the others."""
        return await self.seed(
            {table: TableMode(table, Stage.POSTGRES_ONLY, fallback=True) for table in tables}, who=who
        )

    async def modes(self) -> dict[str, TableMode]:
        rows = await self._pool.fetch("SELECT * FROM migration.table_modes ORDER BY table_name")
        return {row["table_name"]: _mode(row) for row in rows}

    async def live_modes(self) -> dict[str, TableMode]:
        """Every table's mode as a replica runs it: with whether PostgreSQL holds every acknowledged write."""
        modes = await self.modes()
        for table, mode in modes.items():
            complete = mode.stage is not Stage.DYNAMO_ONLY and await reverse_sync_pending(self._pool, table) is None
            modes[table] = dataclasses.replace(mode, postgres_complete=complete)
        return modes

    async def records(self) -> list[ModeRecord]:
        """Every table's mode with its last change's author and time, by table name."""
        rows = await self._pool.fetch("SELECT * FROM migration.table_modes ORDER BY table_name")
        return [_record(row) for row in rows]

    async def record(self, table: str) -> ModeRecord:
        row = await self._pool.fetchrow("SELECT * FROM migration.table_modes WHERE table_name = $1", check_table(table))
        if row is None:
            raise NotFound("migration mode of table", table)
        return _record(row)

    async def mode(self, table: str) -> TableMode:
        row = await self._pool.fetchrow("SELECT * FROM migration.table_modes WHERE table_name = $1", check_table(table))
        if row is None:
            raise NotFound("migration mode of table", table)
        return _mode(row)

    async def change(
        self,
        table: str,
        *,
        stage: Stage | None = None,
        fallback: bool | None = None,
        who: str,
        reason: str = "",
        drain_seconds: float = 0.0,
        waiting: Callable[[str], None] | None = None,
    ) -> TableMode:
        """Set a table's stage and/or fallback: guarded, audited and announced in one transaction.

        A move to dynamo_only first waits up to `drain_seconds` for the journal to drain (see
        wait_for_drained_journal), outside the transaction so the mode's row is not locked meanwhile. Traced as a
        `migration.switch` span (from/to stage, an event when the mode changed; who asked is not recorded there)."""
        check_table(table)
        if not who:
            raise InvalidArgument([FieldViolation("who", "a change must name who makes it")])
        asked: dict[str, str] = {ATTR_COLLECTION: table}
        if stage is not None:
            asked[ATTR_TO_STAGE] = stage.value
        if fallback is not None:
            asked[ATTR_TO_FALLBACK] = "true" if fallback else "false"
        with tracer.start_as_current_span(
            "migration.switch", attributes=asked, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                return await self._guarded_change(span, table, stage, fallback, who, reason, drain_seconds, waiting)
            except FailedPrecondition as refused:
                # The guards' messages name tables, stages, counts and times only: the operator's answer.
                span.set_attribute("error.type", "FailedPrecondition")
                span.set_status(Status(StatusCode.ERROR, str(refused)[:500]))
                span.add_event("migration switch refused")
                raise
            except Exception as error:
                mark_failed(span, error, error_type(error))
                raise

    async def _guarded_change(
        self,
        span: Span,
        table: str,
        stage: Stage | None,
        fallback: bool | None,
        who: str,
        reason: str,
        drain_seconds: float,
        waiting: Callable[[str], None] | None,
    ) -> TableMode:
        drain = None
        if stage is Stage.DYNAMO_ONLY and drain_seconds > 0 and require_drained_journal in self._guards:
            current = await self.mode(table)
            if current.stage is not Stage.DYNAMO_ONLY:
                # The other guards first: a switch they refuse is refused at once, not after the wait.
                wanted = TableMode(table, stage, fallback if fallback is not None else current.fallback)
                async with self._pool.acquire() as connection:
                    for guard in self._guards:
                        if guard is not require_drained_journal:
                            await guard(connection, current, wanted)
                drain = await wait_for_drained_journal(self._pool, table, drain_seconds, waiting)
                span.set_attribute("loanbook.migration.drain_wait_seconds", drain.seconds)
        token = _drain.set(drain)
        try:
            return await self._change(span, table, stage, fallback, who, reason)
        finally:
            _drain.reset(token)

    async def _change(
        self, span: Span, table: str, stage: Stage | None, fallback: bool | None, who: str, reason: str
    ) -> TableMode:
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "SELECT * FROM migration.table_modes WHERE table_name = $1 FOR UPDATE", table
            )
            if row is None:
                raise NotFound("migration mode of table", table)
            current = _mode(row)
            wanted = TableMode(
                table,
                stage if stage is not None else current.stage,
                fallback if fallback is not None else current.fallback,
            )
            change = {
                ATTR_COLLECTION: table,
                ATTR_FROM_STAGE: current.stage.value,
                ATTR_TO_STAGE: wanted.stage.value,
                "loanbook.migration.from_fallback": "true" if current.fallback else "false",
                ATTR_TO_FALLBACK: "true" if wanted.fallback else "false",
            }
            span.set_attributes(change)
            if (wanted.stage, wanted.fallback) == (current.stage, current.fallback):
                span.add_event("migration mode unchanged", change)
                return current
            for guard in self._guards:
                await guard(connection, current, wanted)
            updated = await connection.fetchrow(
                """UPDATE migration.table_modes
                   SET stage = $2, fallback = $3, revision = revision + 1, updated_at = now(), updated_by = $4
                   WHERE table_name = $1 RETURNING *""",
                table,
                wanted.stage.value,
                wanted.fallback,
                who,
            )
            await connection.execute(
                """INSERT INTO migration.mode_changes
                       (table_name, from_stage, to_stage, from_fallback, to_fallback, changed_by, reason)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                table,
                current.stage.value,
                wanted.stage.value,
                current.fallback,
                wanted.fallback,
                who,
                reason,
            )
            # Delivered at commit, to every replica listening; the traceparent links their mode_change spans here.
            notice = {"table": table, "traceparent": current_traceparent()}
            await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(notice))
        assert updated is not None
        span.add_event("migration mode changed", {**change, "loanbook.migration.revision": updated["revision"]})
        logger.info(
            "migration mode changed",
            extra={"table": table, "from": current.stage.value, "to": wanted.stage.value, "by": who},
        )
        return _mode(updated)

    async def watchdog_enabled(self, table: str) -> bool:
        """Whether the table's watchdog may move it back (migration.watchdog): on unless turned off."""
        enabled = await self._pool.fetchval(
            "SELECT enabled FROM migration.watchdogs WHERE table_name = $1", check_table(table)
        )
        return enabled is not False

    async def set_watchdog(self, table: str, enabled: bool, who: str) -> None:
        await self._pool.execute(
            """INSERT INTO migration.watchdogs (table_name, enabled, updated_by) VALUES ($1, $2, $3)
               ON CONFLICT (table_name) DO UPDATE SET enabled = $2, updated_by = $3, updated_at = now()""",
            check_table(table),
            enabled,
            who,
        )

    async def history(self, table: str, limit: int = 50) -> list[ModeChange]:
        rows = await self._pool.fetch(
            "SELECT * FROM migration.mode_changes WHERE table_name = $1 ORDER BY id DESC LIMIT $2",
            check_table(table),
            limit,
        )
        return [
            ModeChange(
                table=row["table_name"],
                from_stage=Stage(row["from_stage"]) if row["from_stage"] else None,
                to_stage=Stage(row["to_stage"]),
                from_fallback=row["from_fallback"],
                to_fallback=row["to_fallback"],
                changed_by=row["changed_by"],
                reason=row["reason"],
                changed_at=row["changed_at"],
            )
            for row in rows
        ]


# --- the settings file -----------------------------------------------------------------------------------

SEED_SECTIONS = {"PaymentSettings": "payments", "LogSettings": "logs", "LoggingSettings": "logs"}


def modes_from_settings(document: Mapping[str, Any], source: str = "settings") -> dict[str, TableMode]:
    """Initial modes from a settings document, in loanbook's shape or the seed's.

    loanbook: {"tables": {"payments": {"stage": "dual_write", "fallback": true}, ...}}
    seed:     {"PaymentSettings": {"ReadFromDynamoDB": true, "EnableFallback": true}}
    """
    modes: dict[str, TableMode] = {}
    unknown = set(document) - {"tables", *SEED_SECTIONS}
    if unknown:
        raise InvalidArgument([FieldViolation(key, f"unknown key in {source}") for key in sorted(unknown)])
    for table, entry in dict(document.get("tables", {})).items():
        if not isinstance(entry, Mapping):
            raise InvalidArgument([FieldViolation(f"tables.{table}", "must be an object")])
        stage = parse_stage(str(entry.get("stage", DEFAULT_MODE["stage"])), f"tables.{table}.stage")
        fallback = entry.get("fallback", DEFAULT_MODE["fallback"])
        if not isinstance(fallback, bool):
            raise InvalidArgument([FieldViolation(f"tables.{table}.fallback", "must be true or false")])
        modes[check_table(table)] = TableMode(table, stage, fallback)
    for section, table in SEED_SECTIONS.items():
        if section not in document:
            continue
        entry = document[section]
        flags = {
            key: entry.get(key, False) if isinstance(entry, Mapping) else None
            for key in ("ReadFromDynamoDB", "EnableFallback")
        }
        bad = [key for key, value in flags.items() if not isinstance(value, bool)]
        if bad:
            raise InvalidArgument([FieldViolation(f"{section}.{key}", "must be true or false") for key in bad])
        modes[table] = TableMode(
            table, stage_from_seed_flags(bool(flags["ReadFromDynamoDB"])), bool(flags["EnableFallback"])
        )
    return modes


def load_settings_file(path: Path) -> dict[str, TableMode]:
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidArgument([FieldViolation(str(path), f"cannot read migration settings: {error}")]) from None
    if not isinstance(document, dict):
        raise InvalidArgument([FieldViolation(str(path), "must hold a JSON object")])
    return modes_from_settings(document, str(path))
