"""Reverse syncs: DynamoDB's items copied back into PostgreSQL after a table left dynamo_only."""

from chassis.schema_migrations import execute_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE TABLE migration.reverse_syncs (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        table_name      text NOT NULL,
        status          text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'failed')),
        -- The stage when the sync started: PostgreSQL must receive every live write while it runs.
        stage           text NOT NULL,
        started_by      text NOT NULL,
        -- The switch out of dynamo_only this sync covers (NULL: the table never was in dynamo_only).
        covers_change   bigint REFERENCES migration.mode_changes (id),
        started_at      timestamptz NOT NULL DEFAULT now(),
        finished_at     timestamptz,
        items_scanned   bigint NOT NULL DEFAULT 0,
        rows_inserted   bigint NOT NULL DEFAULT 0,
        rows_updated    bigint NOT NULL DEFAULT 0,
        -- Items PostgreSQL already held at the same or a newer version: left as they were.
        rows_kept       bigint NOT NULL DEFAULT 0,
        -- Items that could not be written (e.g. an idempotency key PostgreSQL gives another payment).
        conflicts       bigint NOT NULL DEFAULT 0
    );
    CREATE INDEX reverse_syncs_table_idx ON migration.reverse_syncs (table_name, id DESC);
    """)


def downgrade() -> None:
    execute_script("DROP TABLE migration.reverse_syncs;")
