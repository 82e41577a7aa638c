"""Branches, loan officers, customers, loan applications and their transition history."""

from chassis.schema_migrations import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE TABLE customer.branches (
        id          uuid PRIMARY KEY,
        code        text NOT NULL CONSTRAINT branches_code_format CHECK (code ~ '^[A-Z0-9][A-Z0-9-]{1,15}$'),
        name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
        address     text NOT NULL CHECK (char_length(address) BETWEEN 1 AND 500),
        created_at  timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT branches_code_key UNIQUE (code)
    );

    CREATE TABLE customer.loan_officers (
        id          uuid PRIMARY KEY,
        branch_id   uuid NOT NULL REFERENCES customer.branches (id),
        name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
        email       text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX loan_officers_email_key ON customer.loan_officers (lower(email));
    CREATE INDEX loan_officers_branch_idx ON customer.loan_officers (branch_id, id);

    CREATE TABLE customer.customers (
        id             uuid PRIMARY KEY,
        branch_id      uuid NOT NULL REFERENCES customer.branches (id),
        name           text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
        email          text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
        phone          text NOT NULL CHECK (phone ~ '^\\+[1-9][0-9]{6,14}$'),
        date_of_birth  date NOT NULL,
        national_id    text NOT NULL CHECK (char_length(national_id) BETWEEN 4 AND 32),
        version        bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
        created_at     timestamptz NOT NULL DEFAULT now(),
        updated_at     timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX customers_email_key ON customer.customers (lower(email));
    CREATE INDEX customers_branch_idx ON customer.customers (branch_id, id);

    CREATE TABLE customer.loan_applications (
        id               uuid PRIMARY KEY,
        customer_id      uuid NOT NULL REFERENCES customer.customers (id),
        branch_id        uuid NOT NULL REFERENCES customer.branches (id),
        officer_id       uuid NOT NULL REFERENCES customer.loan_officers (id),
        principal_minor  bigint NOT NULL CHECK (principal_minor > 0),
        currency         char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        term_months      integer NOT NULL CHECK (term_months BETWEEN 1 AND 480),
        annual_rate_bps  integer NOT NULL CHECK (annual_rate_bps BETWEEN 0 AND 10000),
        purpose          text NOT NULL CHECK (char_length(purpose) BETWEEN 1 AND 500),
        status           text NOT NULL CHECK (status IN ('SUBMITTED', 'UNDER_REVIEW', 'APPROVED', 'REJECTED',
                                                         'WITHDRAWN', 'FUNDED', 'CLOSED')),
        version          bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
        created_at       timestamptz NOT NULL DEFAULT now(),
        updated_at       timestamptz NOT NULL DEFAULT now()
    );
    -- One index per list filter, each ending in id for the keyset order (newest first).
    CREATE INDEX loan_applications_customer_idx ON customer.loan_applications (customer_id, id);
    CREATE INDEX loan_applications_officer_idx ON customer.loan_applications (officer_id, id);
    CREATE INDEX loan_applications_branch_idx ON customer.loan_applications (branch_id, id);
    CREATE INDEX loan_applications_status_idx ON customer.loan_applications (status, id);
    -- The portfolio summary reads only this index (index-only scan) for one branch.
    CREATE INDEX loan_applications_portfolio_idx ON customer.loan_applications
        (branch_id, officer_id, status, currency) INCLUDE (principal_minor);

    CREATE TABLE customer.loan_application_events (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        application_id  uuid NOT NULL REFERENCES customer.loan_applications (id),
        action          text NOT NULL,
        from_status     text NOT NULL,
        to_status       text NOT NULL,
        version         bigint NOT NULL,
        reason          text NOT NULL DEFAULT '' CHECK (char_length(reason) <= 500),
        occurred_at     timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX loan_application_events_application_idx ON customer.loan_application_events (application_id, id);
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE customer.loan_application_events;
    DROP TABLE customer.loan_applications;
    DROP TABLE customer.customers;
    DROP TABLE customer.loan_officers;
    DROP TABLE customer.branches;
    """)
