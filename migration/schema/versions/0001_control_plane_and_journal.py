"""Table modes with audit, the write journal (outbox), verification runs and shadow mismatches."""

from chassis.schema_migrations import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STAGES = "'postgres_only', 'dual_write', 'shadow', 'dynamo_live', 'dynamo_primary', 'dynamo_only'"


def upgrade() -> None:
    execute_script(f"""
    CREATE TABLE migration.table_modes (
        table_name  text PRIMARY KEY,
        stage       text NOT NULL CHECK (stage IN ({STAGES})),
        fallback    boolean NOT NULL,
        revision    bigint NOT NULL DEFAULT 1,
        updated_at  timestamptz NOT NULL DEFAULT now(),
        updated_by  text NOT NULL
    );

    CREATE TABLE migration.mode_changes (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        table_name     text NOT NULL REFERENCES migration.table_modes (table_name),
        from_stage     text,
        to_stage       text NOT NULL,
        from_fallback  boolean,
        to_fallback    boolean NOT NULL,
        changed_by     text NOT NULL,
        reason         text NOT NULL DEFAULT '',
        changed_at     timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX mode_changes_table_idx ON migration.mode_changes (table_name, id);

    -- The outbox: committed in the same transaction as the PostgreSQL write it stands for. An entry is
    -- deleted once DynamoDB holds that version (inline, or by the relay).
    CREATE TABLE migration.journal (
        id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        table_name       text NOT NULL,
        item_key         text NOT NULL,
        item_version     bigint NOT NULL,
        -- Keys whose reads must not be served from DynamoDB while this entry is pending
        -- (e.g. the payment, its customer's history, its loan's history).
        routing_keys     text[] NOT NULL,
        created_at       timestamptz NOT NULL DEFAULT now(),
        attempts         integer NOT NULL DEFAULT 0,
        next_attempt_at  timestamptz NOT NULL DEFAULT now(),
        last_error       text
    );
    CREATE INDEX journal_due_idx ON migration.journal (table_name, next_attempt_at, id);
    CREATE INDEX journal_routing_idx ON migration.journal USING gin (routing_keys);

    CREATE TABLE migration.verifications (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        table_name     text NOT NULL,
        full_scan      boolean NOT NULL,
        clean          boolean NOT NULL,
        rows_checked   bigint NOT NULL,
        differences    bigint NOT NULL,
        started_at     timestamptz NOT NULL,
        finished_at    timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX verifications_table_idx ON migration.verifications (table_name, finished_at DESC);

    CREATE TABLE migration.shadow_mismatches (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        table_name   text NOT NULL,
        item_key     text NOT NULL,
        stage        text NOT NULL,
        fields       text[] NOT NULL,
        detected_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX shadow_mismatches_table_idx ON migration.shadow_mismatches (table_name, detected_at DESC);
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE migration.shadow_mismatches;
    DROP TABLE migration.verifications;
    DROP TABLE migration.journal;
    DROP TABLE migration.mode_changes;
    DROP TABLE migration.table_modes;
    """)
