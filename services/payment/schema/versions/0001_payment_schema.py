"""Payments: the "before" schema that the move to DynamoDB starts from."""

from chassis.schema_migrations import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # customer_id and loan_id belong to the customer context: no foreign keys across bounded contexts.
    execute_script("""
    CREATE TABLE payment.payments (
        id                   uuid PRIMARY KEY,
        customer_id          uuid NOT NULL,
        loan_id              uuid NOT NULL,
        amount_minor         bigint NOT NULL,
        currency             char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        method               text NOT NULL CHECK (method IN ('ACH', 'CARD', 'WIRE', 'CASH')),
        status               text NOT NULL CHECK (status IN ('PENDING', 'SETTLED', 'FAILED', 'REVERSED')),
        paid_at              timestamptz NOT NULL,
        created_at           timestamptz NOT NULL,
        updated_at           timestamptz NOT NULL,
        version              bigint NOT NULL CHECK (version >= 1),
        idempotency_key      text NOT NULL,
        request_fingerprint  text NOT NULL,
        CONSTRAINT payments_idempotency_key_key UNIQUE (idempotency_key)
    );
    -- The two listings, newest first with id breaking ties: each page is one index range scan.
    CREATE INDEX payments_customer_paid_idx ON payment.payments (customer_id, paid_at DESC, id DESC);
    CREATE INDEX payments_loan_paid_idx ON payment.payments (loan_id, paid_at DESC, id DESC);
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE payment.payments;
    """)
