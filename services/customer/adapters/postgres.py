"""CustomerRepository on PostgreSQL with asyncpg: parameterised SQL only, one query per call where possible."""

from __future__ import annotations

import uuid
from collections import defaultdict

import asyncpg

from chassis.money import Money
from chassis.sql import BoundPredicates
from chassis.store_errors import postgres_errors_translated
from services.customer.domain import (
    ApplicationAction,
    ApplicationFilter,
    ApplicationStatus,
    Branch,
    BranchPortfolio,
    Customer,
    LoanApplication,
    LoanOfficer,
    LoanStanding,
    StatusTotal,
)

# Unique constraint -> (resource, field) for AlreadyExists.
UNIQUE_CONSTRAINTS = {
    "branches_code_key": ("branch", "code"),
    "loan_officers_email_key": ("loan officer", "email"),
    "customers_email_key": ("customer", "email"),
}


# The columns a customer and an application are inserted with, in order; the rest have defaults. Loaders that
# COPY rows in (the seeder, the customer-reads benchmark) use them too.
CUSTOMER_COLUMNS = ("id", "branch_id", "name", "email", "phone", "date_of_birth", "national_id")
APPLICATION_COLUMNS = (
    "id",
    "customer_id",
    "branch_id",
    "officer_id",
    "principal_minor",
    "currency",
    "term_months",
    "annual_rate_bps",
    "purpose",
    "status",
)


def _inserted(row: asyncpg.Record | None) -> asyncpg.Record:
    if row is None:  # INSERT ... RETURNING always returns the row; None would be a driver bug
        raise RuntimeError("INSERT returned no row")
    return row


# Store errors become domain errors: a uniqueness clash, or the database being unreachable. Each call is a CLIENT
# span of its own that records no driver message (PostgreSQL's DETAIL quotes the clashing e-mail), in place of the
# asyncpg instrumentation's (see services/customer/__main__.py).
translated = postgres_errors_translated("customer", UNIQUE_CONSTRAINTS, traced=True)


def _branch(row: asyncpg.Record) -> Branch:
    return Branch(row["id"], row["code"], row["name"], row["address"], row["created_at"])


def _officer(row: asyncpg.Record) -> LoanOfficer:
    return LoanOfficer(row["id"], row["branch_id"], row["name"], row["email"], row["created_at"])


def _customer(row: asyncpg.Record) -> Customer:
    return Customer(
        id=row["id"],
        branch_id=row["branch_id"],
        name=row["name"],
        email=row["email"],
        phone=row["phone"],
        date_of_birth=row["date_of_birth"],
        national_id=row["national_id"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _application(row: asyncpg.Record) -> LoanApplication:
    return LoanApplication(
        id=row["id"],
        customer_id=row["customer_id"],
        branch_id=row["branch_id"],
        officer_id=row["officer_id"],
        principal=Money(row["currency"], row["principal_minor"]),
        term_months=row["term_months"],
        annual_rate_bps=row["annual_rate_bps"],
        purpose=row["purpose"],
        status=ApplicationStatus(row["status"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class PostgresCustomerRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _insert(self, table: str, values: dict[str, object]) -> asyncpg.Record:
        """Inserts one row into a customer table and returns it as stored (with the database's defaults)."""
        placeholders = ", ".join(f"${number}" for number in range(1, len(values) + 1))
        # Built only from the fixed table and column names of this module; every value is a bind parameter.
        query = f"INSERT INTO customer.{table} ({', '.join(values)}) VALUES ({placeholders}) RETURNING *"  # noqa: S608
        return _inserted(await self._pool.fetchrow(query, *values.values()))

    async def _by_id(self, table: str, row_id: uuid.UUID) -> asyncpg.Record | None:
        """One row of a customer table by its id, or None."""
        return await self._pool.fetchrow(f"SELECT * FROM customer.{table} WHERE id = $1", row_id)  # noqa: S608

    async def _page_in_branch(
        self, table: str, branch_id: uuid.UUID | None, after: uuid.UUID | None, limit: int
    ) -> list[asyncpg.Record]:
        """A page of a customer table in id order after `after`, of one branch when `branch_id` is given."""
        return await self._pool.fetch(
            f"""SELECT * FROM customer.{table}
                WHERE ($1::uuid IS NULL OR branch_id = $1) AND ($2::uuid IS NULL OR id > $2)
                ORDER BY id LIMIT $3""",  # noqa: S608 - fixed table names
            branch_id,
            after,
            limit,
        )

    @translated
    async def add_branch(self, branch: Branch) -> Branch:
        values = {"id": branch.id, "code": branch.code, "name": branch.name, "address": branch.address}
        return _branch(await self._insert("branches", values))

    @translated
    async def get_branch(self, branch_id: uuid.UUID) -> Branch | None:
        row = await self._by_id("branches", branch_id)
        return _branch(row) if row else None

    @translated
    async def list_branches(self, after: uuid.UUID | None, limit: int) -> list[Branch]:
        rows = await self._pool.fetch(
            "SELECT * FROM customer.branches WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2", after, limit
        )
        return [_branch(row) for row in rows]

    @translated
    async def add_officer(self, officer: LoanOfficer) -> LoanOfficer:
        values = {"id": officer.id, "branch_id": officer.branch_id, "name": officer.name, "email": officer.email}
        return _officer(await self._insert("loan_officers", values))

    @translated
    async def get_officer(self, officer_id: uuid.UUID) -> LoanOfficer | None:
        row = await self._by_id("loan_officers", officer_id)
        return _officer(row) if row else None

    @translated
    async def list_officers(
        self, branch_id: uuid.UUID | None, after: uuid.UUID | None, limit: int
    ) -> list[LoanOfficer]:
        return [_officer(row) for row in await self._page_in_branch("loan_officers", branch_id, after, limit)]

    @translated
    async def add_customer(self, customer: Customer) -> Customer:
        values = (
            customer.id,
            customer.branch_id,
            customer.name,
            customer.email,
            customer.phone,
            customer.date_of_birth,
            customer.national_id,
        )
        return _customer(await self._insert("customers", dict(zip(CUSTOMER_COLUMNS, values, strict=True))))

    @translated
    async def get_customer(self, customer_id: uuid.UUID) -> Customer | None:
        row = await self._by_id("customers", customer_id)
        return _customer(row) if row else None

    @translated
    async def list_customers(self, branch_id: uuid.UUID | None, after: uuid.UUID | None, limit: int) -> list[Customer]:
        return [_customer(row) for row in await self._page_in_branch("customers", branch_id, after, limit)]

    @translated
    async def update_customer(
        self, customer_id: uuid.UUID, expected_version: int, name: str | None, email: str | None, phone: str | None
    ) -> Customer | None:
        row = await self._pool.fetchrow(
            """UPDATE customer.customers
                SET name = COALESCE($3, name), email = COALESCE($4, email), phone = COALESCE($5, phone),
                    version = version + 1, updated_at = now()
                WHERE id = $1 AND version = $2
                RETURNING *""",
            customer_id,
            expected_version,
            name,
            email,
            phone,
        )
        return _customer(row) if row else None

    @translated
    async def add_application(self, application: LoanApplication) -> LoanApplication:
        values = (
            application.id,
            application.customer_id,
            application.branch_id,
            application.officer_id,
            application.principal.minor_units,
            application.principal.currency,
            application.term_months,
            application.annual_rate_bps,
            application.purpose,
            application.status.value,
        )
        return _application(
            await self._insert("loan_applications", dict(zip(APPLICATION_COLUMNS, values, strict=True)))
        )

    @translated
    async def get_application(self, application_id: uuid.UUID) -> LoanApplication | None:
        row = await self._by_id("loan_applications", application_id)
        return _application(row) if row else None

    @translated
    async def list_applications(
        self, where: ApplicationFilter, before: uuid.UUID | None, limit: int
    ) -> list[LoanApplication]:
        # Only the filters given become predicates, so the planner sees a plain indexable condition.
        predicates = BoundPredicates()
        for column, value in (
            ("customer_id", where.customer_id),
            ("officer_id", where.officer_id),
            ("branch_id", where.branch_id),
            ("status", where.status.value if where.status else None),
        ):
            if value is not None:
                predicates.add(f"{column} = {{}}", value)
        if before is not None:
            predicates.add("id < {}", before)
        where_clause = f"WHERE {predicates.joined()}" if predicates.conditions else ""
        # Built only from the fixed column names above; every value is a bind parameter.
        limit_clause = f"ORDER BY id DESC LIMIT {predicates.bind(limit)}"
        query = f"SELECT * FROM customer.loan_applications {where_clause} {limit_clause}"  # noqa: S608
        rows = await self._pool.fetch(query, *predicates.arguments)
        return [_application(row) for row in rows]

    @translated
    async def set_application_status(
        self,
        application_id: uuid.UUID,
        expected_version: int,
        status: ApplicationStatus,
        action: ApplicationAction,
        reason: str,
    ) -> LoanApplication | None:
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                """UPDATE customer.loan_applications AS a
                    SET status = $3, version = a.version + 1, updated_at = now()
                    FROM (SELECT status FROM customer.loan_applications WHERE id = $1) AS before
                    WHERE a.id = $1 AND a.version = $2
                    RETURNING a.*, before.status AS from_status""",
                application_id,
                expected_version,
                status.value,
            )
            if row is None:
                return None
            await connection.execute(
                """INSERT INTO customer.loan_application_events
                       (application_id, action, from_status, to_status, version, reason)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                application_id,
                action.value,
                row["from_status"],
                status.value,
                row["version"],
                reason,
            )
            return _application(_inserted(row))

    @translated
    async def branch_portfolio(self, branch_id: uuid.UUID) -> BranchPortfolio:
        rows = await self._pool.fetch(
            """SELECT officer_id, status, currency, count(*) AS applications, sum(principal_minor) AS principal
               FROM customer.loan_applications WHERE branch_id = $1
               GROUP BY GROUPING SETS ((status, currency), (officer_id, status, currency))
               ORDER BY officer_id NULLS FIRST, status, currency""",
            branch_id,
        )
        totals: list[StatusTotal] = []
        by_officer: dict[uuid.UUID, list[StatusTotal]] = defaultdict(list)
        for row in rows:
            total = StatusTotal(
                ApplicationStatus(row["status"]), row["applications"], Money(row["currency"], int(row["principal"]))
            )
            if row["officer_id"] is None:
                totals.append(total)
            else:
                by_officer[row["officer_id"]].append(total)
        return BranchPortfolio(branch_id, totals, dict(by_officer))

    @translated
    async def loan_standing(self, loan_id: uuid.UUID, customer_id: uuid.UUID) -> LoanStanding:
        row = await self._pool.fetchrow(
            "SELECT customer_id, status, principal_minor, currency FROM customer.loan_applications WHERE id = $1",
            loan_id,
        )
        if row is None:
            return LoanStanding(exists=False)
        return LoanStanding(
            exists=True,
            belongs_to_customer=row["customer_id"] == customer_id,
            status=ApplicationStatus(row["status"]),
            principal=Money(row["currency"], row["principal_minor"]),
        )
