"""Demo branches, officers, customers and funded loans for the local stack, with fixed ids (idempotent)."""

from __future__ import annotations

import uuid
from datetime import date

from chassis.money import Money
from services.customer.domain import (
    ApplicationAction,
    Branch,
    Customer,
    LoanApplication,
    LoanOfficer,
    next_status,
)
from services.customer.ports import CustomerRepository

# Fixed, so a development token can name a demo customer and re-seeding finds what is there.
DEMO_CUSTOMER_ID = uuid.UUID("0193a000-0000-7000-8000-000000000c01")

BRANCHES = [
    Branch(uuid.UUID("0193a000-0000-7000-8000-000000000b01"), "NYC-01", "Midtown", "1 Demo Plaza, New York, NY"),
    Branch(uuid.UUID("0193a000-0000-7000-8000-000000000b02"), "SFO-01", "Mission", "2 Demo Street, San Francisco, CA"),
]
OFFICERS = [
    LoanOfficer(uuid.UUID("0193a000-0000-7000-8000-000000000f01"), BRANCHES[0].id, "Ada Officer", "ada@demo.loanbook"),
    LoanOfficer(uuid.UUID("0193a000-0000-7000-8000-000000000f02"), BRANCHES[1].id, "Bo Officer", "bo@demo.loanbook"),
]
# Records packed one a line (fmt: skip): the formatter would give each field a line of its own.
CUSTOMERS = [
    Customer(DEMO_CUSTOMER_ID, BRANCHES[0].id, "Casey Demo", "casey@demo.loanbook", "+12125550101",
             date(1985, 4, 12), "DEMO-0001"),
    Customer(uuid.UUID("0193a000-0000-7000-8000-000000000c02"), BRANCHES[0].id, "Devon Demo", "devon@demo.loanbook",
             "+12125550102", date(1990, 9, 30), "DEMO-0002"),
    Customer(uuid.UUID("0193a000-0000-7000-8000-000000000c03"), BRANCHES[1].id, "Emery Demo", "emery@demo.loanbook",
             "+14155550103", date(1978, 1, 5), "DEMO-0003"),
]  # fmt: skip
FUNDED = [ApplicationAction.REVIEW, ApplicationAction.APPROVE, ApplicationAction.FUND]
# (application, the actions that bring it to its demo status)
APPLICATIONS = [
    (LoanApplication(uuid.UUID("0193a000-0000-7000-8000-000000000a01"), CUSTOMERS[0].id, BRANCHES[0].id,
                     OFFICERS[0].id, Money("USD", 25_000_00), 36, 799, "car"), FUNDED),
    (LoanApplication(uuid.UUID("0193a000-0000-7000-8000-000000000a02"), CUSTOMERS[1].id, BRANCHES[0].id,
                     OFFICERS[0].id, Money("USD", 250_000_00), 360, 650, "home"), FUNDED),
    (LoanApplication(uuid.UUID("0193a000-0000-7000-8000-000000000a03"), CUSTOMERS[2].id, BRANCHES[1].id,
                     OFFICERS[1].id, Money("USD", 8_000_00), 24, 1199, "equipment"), FUNDED),
    (LoanApplication(uuid.UUID("0193a000-0000-7000-8000-000000000a04"), CUSTOMERS[0].id, BRANCHES[0].id,
                     OFFICERS[0].id, Money("USD", 5_000_00), 12, 1500, "vacation"), [ApplicationAction.REVIEW]),
]  # fmt: skip


async def seed_demo_data(repository: CustomerRepository) -> int:
    """Create whatever demo record is missing; returns how many were created."""
    created = 0
    for branch in BRANCHES:
        if await repository.get_branch(branch.id) is None:
            await repository.add_branch(branch)
            created += 1
    for officer in OFFICERS:
        if await repository.get_officer(officer.id) is None:
            await repository.add_officer(officer)
            created += 1
    for customer in CUSTOMERS:
        if await repository.get_customer(customer.id) is None:
            await repository.add_customer(customer)
            created += 1
    for application, actions in APPLICATIONS:
        if await repository.get_application(application.id) is not None:
            continue
        current = await repository.add_application(application)
        for action in actions:
            moved = await repository.set_application_status(
                current.id, current.version, next_status(current.status, action), action, "demo data"
            )
            assert moved is not None
            current = moved
        created += 1
    return created
