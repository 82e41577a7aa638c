"""Backfill runs with per-range checkpoints (a killed run resumes), and what each verification found."""

from chassis.schema_migrations import execute_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE TABLE migration.backfill_runs (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        table_name     text NOT NULL,
        status         text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'abandoned')),
        -- The stage when the run started: backfills only run while DynamoDB receives every live write.
        stage          text NOT NULL,
        started_by     text NOT NULL,
        rows_total     bigint NOT NULL,
        started_at     timestamptz NOT NULL DEFAULT now(),
        updated_at     timestamptz NOT NULL DEFAULT now(),
        finished_at    timestamptz
    );
    CREATE INDEX backfill_runs_table_idx ON migration.backfill_runs (table_name, id DESC);
    -- At most one unfinished run per table: the next `backfill` resumes it rather than starting another.
    CREATE UNIQUE INDEX backfill_runs_one_open_idx ON migration.backfill_runs (table_name) WHERE status = 'running';

    -- A run's key ranges: rows with lower_key < key <= upper_key (NULL: unbounded), keys as text arrays in
    -- the table's key column order. `last_key` is the checkpoint: every row up to it is in DynamoDB.
    CREATE TABLE migration.backfill_ranges (
        run_id       bigint NOT NULL REFERENCES migration.backfill_runs (id) ON DELETE CASCADE,
        range_no     integer NOT NULL,
        lower_key    text[],
        upper_key    text[],
        last_key     text[],
        rows_done    bigint NOT NULL DEFAULT 0,
        items_done   bigint NOT NULL DEFAULT 0,
        done         boolean NOT NULL DEFAULT false,
        updated_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, range_no)
    );

    ALTER TABLE migration.verifications
        ADD COLUMN sample_fraction double precision NOT NULL DEFAULT 1,
        ADD COLUMN missing bigint NOT NULL DEFAULT 0,
        ADD COLUMN extra bigint NOT NULL DEFAULT 0,
        ADD COLUMN differing bigint NOT NULL DEFAULT 0,
        ADD COLUMN repaired bigint NOT NULL DEFAULT 0;
    """)


def downgrade() -> None:
    execute_script("""
    ALTER TABLE migration.verifications
        DROP COLUMN sample_fraction, DROP COLUMN missing, DROP COLUMN extra, DROP COLUMN differing,
        DROP COLUMN repaired;
    DROP TABLE migration.backfill_ranges;
    DROP TABLE migration.backfill_runs;
    """)
