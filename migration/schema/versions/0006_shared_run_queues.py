"""Backfill and verification runs shared by several processes: ranges and segments leased from one queue."""

from chassis.schema_migrations import execute_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    -- A range being copied is leased by one process (host:pid:nonce) until lease_expires_at; the holder renews it
    -- with every checkpoint, and another process takes it over (from its last checkpoint) once the lease expires.
    ALTER TABLE migration.backfill_ranges ADD COLUMN leased_by text, ADD COLUMN lease_expires_at timestamptz;

    -- A verification split over processes: its key ranges (PostgreSQL rows compared with DynamoDB) and scan
    -- segments (DynamoDB items looked up in PostgreSQL) are units of one queue, each leased like a backfill range
    -- and holding its own counts; the process that completes the last unit records the verification.
    CREATE TABLE migration.verify_runs (
        id              bigserial PRIMARY KEY,
        table_name      text NOT NULL,
        status          text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'abandoned')),
        repair          boolean NOT NULL,
        started_by      text NOT NULL,
        rows_total      bigint NOT NULL,
        started_at      timestamptz NOT NULL DEFAULT now(),
        finished_at     timestamptz,
        verification_id bigint REFERENCES migration.verifications (id)
    );
    CREATE UNIQUE INDEX verify_runs_one_running ON migration.verify_runs (table_name) WHERE status = 'running';

    CREATE TABLE migration.verify_units (
        run_id           bigint NOT NULL REFERENCES migration.verify_runs (id) ON DELETE CASCADE,
        unit_no          integer NOT NULL,
        lower_key        text[],
        upper_key        text[],
        segment          integer,  -- NULL: a key range; otherwise a scan segment of total_segments
        total_segments   integer,
        done             boolean NOT NULL DEFAULT false,
        leased_by        text,
        lease_expires_at timestamptz,
        rows_checked     bigint NOT NULL DEFAULT 0,
        items_checked    bigint NOT NULL DEFAULT 0,
        items_scanned    bigint NOT NULL DEFAULT 0,
        missing          bigint NOT NULL DEFAULT 0,
        extra            bigint NOT NULL DEFAULT 0,
        differing        bigint NOT NULL DEFAULT 0,
        repaired         bigint NOT NULL DEFAULT 0,
        rechecked        bigint NOT NULL DEFAULT 0,
        in_flight        bigint NOT NULL DEFAULT 0,
        differences      jsonb NOT NULL DEFAULT '[]',  -- the first few found in the unit: kind, key, field names
        updated_at       timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, unit_no)
    );
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE migration.verify_units;
    DROP TABLE migration.verify_runs;
    ALTER TABLE migration.backfill_ranges DROP COLUMN leased_by, DROP COLUMN lease_expires_at;
    """)
