"""Copies still settling: read keys whose DynamoDB copy landed moments ago, while DynamoDB's indexes catch up."""

from chassis.migrations import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    -- A completed journal entry moves here: DynamoDB's GSIs (and its default, eventually consistent reads) may not
    -- show the copy for a moment, so its read keys keep being routed to PostgreSQL until the copy settles.
    CREATE TABLE migration.journal_settling (
        table_name    text NOT NULL,
        routing_keys  text[] NOT NULL,
        copied_at     timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX journal_settling_routing_idx ON migration.journal_settling USING gin (routing_keys);
    CREATE INDEX journal_settling_copied_idx ON migration.journal_settling (table_name, copied_at);
    """)


def downgrade() -> None:
    execute_script("DROP TABLE migration.journal_settling;")
