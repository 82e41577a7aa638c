"""What each backfill, verification and reverse sync consumed of DynamoDB's capacity, in read and write units."""

from chassis.schema_migrations import execute_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("migration.backfill_runs", "migration.verifications", "migration.reverse_syncs")


def upgrade() -> None:
    # Units as DynamoDB's ConsumedCapacity reports them, table and indexes together (an eventually consistent read
    # is half a unit). A backfill run shared by several processes adds each page's units as it is checkpointed, a
    # shared verification each process's when it ends. Defaults: adding the columns rewrites no row, and runs
    # recorded before read 0, as do those of toolkits not yet upgraded.
    execute_script(
        "\n".join(
            f"""ALTER TABLE {table}
                ADD COLUMN consumed_read_units double precision NOT NULL DEFAULT 0,
                ADD COLUMN consumed_write_units double precision NOT NULL DEFAULT 0;"""
            for table in TABLES
        )
    )


def downgrade() -> None:
    execute_script(
        "\n".join(
            f"ALTER TABLE {table} DROP COLUMN consumed_read_units, DROP COLUMN consumed_write_units;"
            for table in TABLES
        )
    )
