"""System log entries: one table partitioned by day, the PostgreSQL side of the move to DynamoDB."""

from chassis.schema_migrations import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Partitions (one per UTC day, `entries_pYYYYMMDD`) are created ahead and dropped after the retention by
    # services.logging.adapters.postgres.LogPartitions, at start-up and hourly; no default partition, so a
    # day is never trapped in one that would block creating its own.
    execute_script("""
    CREATE TABLE logging.entries (
        service     text NOT NULL,
        time        timestamptz NOT NULL,
        id          uuid NOT NULL,
        level       smallint NOT NULL CHECK (level BETWEEN 1 AND 5),
        message     text NOT NULL,
        attributes  jsonb NOT NULL DEFAULT '{}',
        trace_id    text,
        span_id     text,
        -- The WriteLogs batch that stored the row: the journal entry of a batch names it, and the relay
        -- copies the batch's rows to DynamoDB by it.
        batch_id    uuid NOT NULL,
        -- Also the index of "a service's logs, newest first" (scanned backwards), and what makes a
        -- re-sent entry (a shipper's retry) a no-op.
        CONSTRAINT entries_pkey PRIMARY KEY (service, time, id)
    ) PARTITION BY RANGE (time);
    CREATE INDEX entries_trace_idx ON logging.entries (trace_id, time, id) WHERE trace_id IS NOT NULL;
    CREATE INDEX entries_batch_idx ON logging.entries (batch_id);
    """)


def downgrade() -> None:
    execute_script("DROP TABLE logging.entries;")
