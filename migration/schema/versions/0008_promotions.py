"""Guarded promotions: one row per walk of a table through its stages, and every decision with its figures."""

from chassis.schema_migrations import execute_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # At most one running promotion per table: a second `loanbook migrate promote` resumes it instead. The promoter
    # also holds a session advisory lock while it works, so a running row without a holder is an interrupted one.
    execute_script("""
    CREATE TABLE migration.promotions (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        table_name      text NOT NULL,
        target_stage    text NOT NULL,
        window_seconds  double precision NOT NULL,
        status          text NOT NULL CHECK (status IN ('running', 'finished', 'stopped')),
        outcome         text NOT NULL DEFAULT '',
        started_by      text NOT NULL,
        started_at      timestamptz NOT NULL DEFAULT now(),
        finished_at     timestamptz
    );
    CREATE UNIQUE INDEX promotions_one_running_idx ON migration.promotions (table_name) WHERE status = 'running';

    CREATE TABLE migration.promotion_decisions (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        promotion_id  bigint NOT NULL REFERENCES migration.promotions (id),
        table_name    text NOT NULL,
        stage         text NOT NULL,
        decision      text NOT NULL,
        detail        text NOT NULL,
        figures       jsonb NOT NULL,
        decided_at    timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX promotion_decisions_promotion_idx ON migration.promotion_decisions (promotion_id, id);
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE migration.promotion_decisions;
    DROP TABLE migration.promotions;
    """)
