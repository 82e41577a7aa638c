"""Copies still settling: read keys whose DynamoDB copy landed moments ago, while DynamoDB's indexes catch up."""

from chassis.schema_migrations import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    -- A completed journal entry's keys move here: DynamoDB's GSIs are eventually consistent and may not show the
    -- copy for a moment, so those read keys keep being routed to PostgreSQL until the copy settles.
    -- Only the keys read through an index are kept (see Journal's `settling_kinds`).
    CREATE TABLE migration.journal_settling (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        table_name    text NOT NULL,
        routing_keys  text[] NOT NULL,
        -- Fixed when the copy lands, by the replica that made it: every replica then agrees on the window.
        settles_at    timestamptz NOT NULL
    );
    CREATE INDEX journal_settling_routing_idx ON migration.journal_settling USING gin (routing_keys);
    CREATE INDEX journal_settling_settles_idx ON migration.journal_settling (table_name, settles_at);
    """)


def downgrade() -> None:
    execute_script("DROP TABLE migration.journal_settling;")
