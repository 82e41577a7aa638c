"""The watchdog's switch per table: on unless a row says off (`loanbook migrate watchdog TABLE on|off`)."""

from chassis.schema_migrations import execute_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE TABLE migration.watchdogs (
        table_name  text PRIMARY KEY,
        enabled     boolean NOT NULL,
        updated_by  text NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now()
    );
    """)


def downgrade() -> None:
    execute_script("DROP TABLE migration.watchdogs;")
