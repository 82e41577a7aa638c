"""Journal entries remember the trace of the write they stand for, so the relay's copy can link back to it."""

from chassis.schema_migrations import execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    -- The W3C traceparent of the span that journaled the write; NULL when it was not traced. Nullable without a
    -- default: adding it rewrites nothing, and entries written by replicas not yet upgraded simply have none.
    ALTER TABLE migration.journal ADD COLUMN trace_context text;
    """)


def downgrade() -> None:
    execute_script("ALTER TABLE migration.journal DROP COLUMN trace_context;")
