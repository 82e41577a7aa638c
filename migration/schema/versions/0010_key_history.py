"""Key history for incremental verification: every journaled write's key, the snapshot each verification covers."""

from chassis.schema_migrations import execute_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    -- One row per journaled write, committed with it (migration.journal.Journal.append) and kept after its copy
    -- lands: which keys were written since a verification. `xid` is the writing transaction, so whether a verification
    -- covers a write is exact: the write's transaction is visible in the snapshot the verification recorded.
    -- A clean verification drops the rows it covers; rows past the retention are dropped with a gap recorded.
    CREATE TABLE migration.key_history (
        table_name  text NOT NULL,
        item_key    text NOT NULL,
        xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
        written_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX key_history_table_written_idx ON migration.key_history (table_name, written_at);

    -- Key history dropped before a verification covered it (past the retention): any incremental verification
    -- chain whose full verification's snapshot does not already cover the gap's is broken.
    CREATE TABLE migration.key_history_gaps (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        table_name   text NOT NULL,
        snapshot     pg_snapshot NOT NULL,  -- rows visible in it may have been dropped
        rows         bigint NOT NULL,
        oldest       timestamptz NOT NULL,
        newest       timestamptz NOT NULL,
        reason       text NOT NULL,
        recorded_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX key_history_gaps_table_idx ON migration.key_history_gaps (table_name, id);

    -- `covers`: the snapshot a verification vouches for, taken before it read anything: every write whose
    -- transaction is visible in it was compared (a full verification) or had its key compared (an incremental one).
    -- An incremental verification compares the keys written after the verification it `follows`.
    ALTER TABLE migration.verifications
        ADD COLUMN incremental boolean NOT NULL DEFAULT false,
        ADD COLUMN follows bigint REFERENCES migration.verifications (id),
        ADD COLUMN covers pg_snapshot;
    ALTER TABLE migration.verify_runs ADD COLUMN covers pg_snapshot;

    -- Whether every transaction visible in `earlier` is visible in `later` (so `later` covers what `earlier` saw):
    -- those below later's xmin are; of the rest, none of later's in-progress ones may be visible in `earlier`, and
    -- `earlier` may see nothing that started after `later` was taken.
    CREATE FUNCTION migration.snapshot_covers(later pg_snapshot, earlier pg_snapshot) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT AS $$
        SELECT pg_snapshot_xmax(earlier) <= pg_snapshot_xmax(later)
           AND NOT EXISTS (SELECT 1 FROM pg_snapshot_xip(later) AS running (xid)
                           WHERE pg_visible_in_snapshot(running.xid, earlier))
    $$;
    """)


def downgrade() -> None:
    execute_script("""
    DROP FUNCTION migration.snapshot_covers(pg_snapshot, pg_snapshot);
    ALTER TABLE migration.verify_runs DROP COLUMN covers;
    ALTER TABLE migration.verifications DROP COLUMN incremental, DROP COLUMN follows, DROP COLUMN covers;
    DROP TABLE migration.key_history_gaps;
    DROP TABLE migration.key_history;
    """)
