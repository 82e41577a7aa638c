"""Loan applications through the gRPC API: submission, workflow, concurrency, queries, portfolio, standing."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import TYPE_CHECKING

import asyncpg
import grpc
import pytest
from google.type import money_pb2

from loanbook.customer.v1 import customer_pb2 as pb
from loanbook.customer.v1 import customer_pb2_grpc
from services.customer.adapters.postgres import PostgresCustomerRepository
from services.customer.demo import APPLICATIONS, DEMO_CUSTOMER_ID, seed_demo_data
from services.customer.domain import TRANSITIONS, ApplicationAction, ApplicationStatus
from services.customer.schema import upgrade_to_head
from tests.support.customers import Factory, usd
from tests.support.grpc import bad_request_fields

if TYPE_CHECKING:
    Stub = customer_pb2_grpc.CustomerServiceAsyncStub

# Actions that bring a new (SUBMITTED) application to each status.
PATH_TO: dict[ApplicationStatus, list[ApplicationAction]] = {
    ApplicationStatus.SUBMITTED: [],
    ApplicationStatus.UNDER_REVIEW: [ApplicationAction.REVIEW],
    ApplicationStatus.APPROVED: [ApplicationAction.REVIEW, ApplicationAction.APPROVE],
    ApplicationStatus.REJECTED: [ApplicationAction.REVIEW, ApplicationAction.REJECT],
    ApplicationStatus.WITHDRAWN: [ApplicationAction.WITHDRAW],
    ApplicationStatus.FUNDED: [ApplicationAction.REVIEW, ApplicationAction.APPROVE, ApplicationAction.FUND],
    ApplicationStatus.CLOSED: [
        ApplicationAction.REVIEW,
        ApplicationAction.APPROVE,
        ApplicationAction.FUND,
        ApplicationAction.CLOSE,
    ],
}


def action_pb(action: ApplicationAction) -> pb.ApplicationAction.ValueType:
    return pb.ApplicationAction.Value(f"APPLICATION_ACTION_{action.value}")


def status_pb(status: ApplicationStatus) -> pb.ApplicationStatus.ValueType:
    return pb.ApplicationStatus.Value(f"APPLICATION_STATUS_{status.value}")


async def application_in(factory: Factory, status: ApplicationStatus) -> pb.LoanApplication:
    _, officer, customer = await factory.world()
    application = await factory.application(customer.id, officer.id)
    return await factory.move(application, *(action_pb(a) for a in PATH_TO[status]))


async def test_submits_an_application_at_the_customers_branch(customer_stub: Stub, factory: Factory) -> None:
    branch, officer, customer = await factory.world()

    submitted = await factory.application(customer.id, officer.id)
    fetched = await customer_stub.GetLoanApplication(pb.GetLoanApplicationRequest(application_id=submitted.id))

    assert fetched.application == submitted
    assert (submitted.customer_id, submitted.branch_id, submitted.officer_id) == (customer.id, branch.id, officer.id)
    assert submitted.status == pb.APPLICATION_STATUS_SUBMITTED
    assert (submitted.principal.currency_code, submitted.principal.units, submitted.principal.nanos) == (
        "USD",
        10_000,
        500_000_000,
    )
    assert (submitted.term_months, submitted.annual_rate_bps, submitted.version) == (36, 725, 1)


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"principal": usd(50)}, ["principal"]),
        ({"principal": usd(10_000_001)}, ["principal"]),
        ({"principal": usd(1000, 5_000_000)}, ["principal.nanos"]),
        ({"principal": money_pb2.Money(currency_code="BTC", units=1000)}, ["principal.currency_code"]),
        ({"principal": None}, ["principal"]),
        ({"term_months": 0, "annual_rate_bps": 10_001}, ["term_months", "annual_rate_bps"]),
        ({"purpose": "   "}, ["purpose"]),
        ({"purpose": "a boat\x00"}, ["purpose"]),
        ({"customer_id": "x", "officer_id": ""}, ["customer_id", "officer_id"]),
    ],
)
async def test_bad_application_input_names_the_fields_and_writes_nothing(
    customer_stub: Stub, factory: Factory, db: asyncpg.Pool, overrides: dict[str, object], fields: list[str]
) -> None:
    _, officer, customer = await factory.world()
    before = await db.fetchval("SELECT count(*) FROM customer.loan_applications")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await customer_stub.SubmitLoanApplication(factory.application_request(customer.id, officer.id, **overrides))

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(refused.value) == fields
    assert await db.fetchval("SELECT count(*) FROM customer.loan_applications") == before


async def test_an_application_needs_a_known_customer_and_an_officer_of_the_same_branch(
    customer_stub: Stub, factory: Factory
) -> None:
    _, officer, customer = await factory.world()
    _, other_officer, _ = await factory.world()

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await customer_stub.SubmitLoanApplication(
            factory.application_request("0193a000-0000-7000-8000-00000000ffff", officer.id)
        )
    with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
        await customer_stub.SubmitLoanApplication(factory.application_request(customer.id, other_officer.id))

    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert elsewhere.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(("current", "action"), list(TRANSITIONS))
async def test_every_legal_transition_moves_the_application_and_records_it(
    customer_stub: Stub, factory: Factory, db: asyncpg.Pool, current: ApplicationStatus, action: ApplicationAction
) -> None:
    application = await application_in(factory, current)

    moved = (
        await customer_stub.TransitionLoanApplication(
            pb.TransitionLoanApplicationRequest(
                application_id=application.id, action=action_pb(action), version=application.version, reason="ok"
            )
        )
    ).application

    assert moved.status == status_pb(TRANSITIONS[(current, action)])
    assert moved.version == application.version + 1
    event = await db.fetchrow(
        "SELECT action, from_status, to_status, version, reason FROM customer.loan_application_events"
        " WHERE application_id = $1 ORDER BY id DESC LIMIT 1",
        moved.id,
    )
    assert event is not None
    assert dict(event) == {
        "action": action.value,
        "from_status": current.value,
        "to_status": TRANSITIONS[(current, action)].value,
        "version": moved.version,
        "reason": "ok",
    }


ILLEGAL = [pair for pair in itertools.product(ApplicationStatus, ApplicationAction) if pair not in TRANSITIONS]


@pytest.mark.parametrize(("current", "action"), ILLEGAL)
async def test_every_illegal_transition_is_refused_and_changes_nothing(
    customer_stub: Stub, factory: Factory, current: ApplicationStatus, action: ApplicationAction
) -> None:
    application = await application_in(factory, current)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await customer_stub.TransitionLoanApplication(
            pb.TransitionLoanApplicationRequest(
                application_id=application.id, action=action_pb(action), version=application.version
            )
        )
    after = await customer_stub.GetLoanApplication(pb.GetLoanApplicationRequest(application_id=application.id))

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert current.value in (refused.value.details() or "")
    assert action.value.lower() in (refused.value.details() or "")
    assert after.application == application


async def test_a_transition_at_a_stale_version_is_aborted(customer_stub: Stub, factory: Factory) -> None:
    application = await application_in(factory, ApplicationStatus.UNDER_REVIEW)

    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await customer_stub.TransitionLoanApplication(
            pb.TransitionLoanApplicationRequest(
                application_id=application.id, action=pb.APPLICATION_ACTION_APPROVE, version=1
            )
        )
    with pytest.raises(grpc.aio.AioRpcError) as no_action:
        await customer_stub.TransitionLoanApplication(
            pb.TransitionLoanApplicationRequest(application_id=application.id, version=application.version)
        )

    with pytest.raises(grpc.aio.AioRpcError) as nul_in_reason:
        await customer_stub.TransitionLoanApplication(
            pb.TransitionLoanApplicationRequest(
                application_id=application.id,
                action=pb.APPLICATION_ACTION_APPROVE,
                version=application.version,
                reason="looks\x00fine",
            )
        )
    after = await customer_stub.GetLoanApplication(pb.GetLoanApplicationRequest(application_id=application.id))

    assert stale.value.code() == grpc.StatusCode.ABORTED
    assert bad_request_fields(no_action.value) == ["action"]
    assert bad_request_fields(nul_in_reason.value) == ["reason"]
    assert after.application == application


async def test_two_clients_moving_one_application_at_once_exactly_one_wins(
    customer_address: str, customer_stub: Stub, factory: Factory
) -> None:
    application = await application_in(factory, ApplicationStatus.UNDER_REVIEW)
    # Two separate channels: two clients, not two calls multiplexed on one connection.
    channels = [grpc.aio.insecure_channel(customer_address) for _ in range(2)]
    try:
        stubs = [customer_pb2_grpc.CustomerServiceStub(channel) for channel in channels]
        requests = [
            pb.TransitionLoanApplicationRequest(
                application_id=application.id, action=action, version=application.version
            )
            for action in (pb.APPLICATION_ACTION_APPROVE, pb.APPLICATION_ACTION_REJECT)
        ]
        results = await asyncio.gather(
            *(stub.TransitionLoanApplication(request) for stub, request in zip(stubs, requests, strict=True)),
            return_exceptions=True,
        )
    finally:
        for channel in channels:
            await channel.close()

    winners = [r for r in results if isinstance(r, pb.TransitionLoanApplicationResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert losers[0].code() == grpc.StatusCode.ABORTED
    final = await customer_stub.GetLoanApplication(pb.GetLoanApplicationRequest(application_id=application.id))
    assert final.application == winners[0].application


async def test_lists_applications_by_each_filter_newest_first_across_pages(
    customer_stub: Stub, factory: Factory
) -> None:
    branch = await factory.branch()
    officers = [await factory.officer(branch.id) for _ in range(2)]
    customer = await factory.customer(branch.id)
    created = [await factory.application(customer.id, officers[i % 2].id) for i in range(7)]
    await factory.move(created[0], pb.APPLICATION_ACTION_REVIEW)

    async def all_pages(**filters: object) -> list[str]:
        ids: list[str] = []
        token = ""
        while True:
            page = await customer_stub.ListLoanApplications(
                pb.ListLoanApplicationsRequest(page_size=3, page_token=token, **filters)  # type: ignore[arg-type]
            )
            ids.extend(a.id for a in page.applications)
            token = page.next_page_token
            if not token:
                return ids

    newest_first = [a.id for a in reversed(created)]
    assert await all_pages(customer_id=customer.id) == newest_first
    assert await all_pages(branch_id=branch.id) == newest_first
    assert await all_pages(officer_id=officers[0].id) == [a.id for a in reversed(created[0::2])]
    assert await all_pages(branch_id=branch.id, status=pb.APPLICATION_STATUS_UNDER_REVIEW) == [created[0].id]
    assert await all_pages(customer_id=customer.id, status=pb.APPLICATION_STATUS_SUBMITTED) == newest_first[:-1]


async def test_an_unknown_status_filter_is_invalid(customer_stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await customer_stub.ListLoanApplications(pb.ListLoanApplicationsRequest(status=99))  # type: ignore[arg-type]

    assert bad_request_fields(refused.value) == ["status"]


async def test_branch_portfolio_counts_and_sums_by_status_and_officer(customer_stub: Stub, factory: Factory) -> None:
    branch = await factory.branch()
    first, second = await factory.officer(branch.id), await factory.officer(branch.id)
    customer = await factory.customer(branch.id)
    a1 = await factory.application(customer.id, first.id)
    await factory.application(customer.id, first.id)
    a3 = await factory.application(customer.id, second.id)
    await factory.move(a1, pb.APPLICATION_ACTION_REVIEW)
    await factory.move(a3, pb.APPLICATION_ACTION_WITHDRAW)

    portfolio = await customer_stub.GetBranchPortfolio(pb.GetBranchPortfolioRequest(branch_id=branch.id))

    def totals(items: object) -> dict[int, tuple[int, int, int]]:
        return {t.status: (t.count, t.principal.units, t.principal.nanos) for t in items}  # type: ignore[attr-defined]

    assert portfolio.branch_id == branch.id
    assert totals(portfolio.totals) == {
        pb.APPLICATION_STATUS_SUBMITTED: (1, 10_000, 500_000_000),
        pb.APPLICATION_STATUS_UNDER_REVIEW: (1, 10_000, 500_000_000),
        pb.APPLICATION_STATUS_WITHDRAWN: (1, 10_000, 500_000_000),
    }
    by_officer = {o.officer_id: totals(o.totals) for o in portfolio.officers}
    assert by_officer == {
        first.id: {
            pb.APPLICATION_STATUS_SUBMITTED: (1, 10_000, 500_000_000),
            pb.APPLICATION_STATUS_UNDER_REVIEW: (1, 10_000, 500_000_000),
        },
        second.id: {pb.APPLICATION_STATUS_WITHDRAWN: (1, 10_000, 500_000_000)},
    }


async def test_loan_standing_tells_existence_ownership_and_status(customer_stub: Stub, factory: Factory) -> None:
    funded = await application_in(factory, ApplicationStatus.FUNDED)
    stranger = await factory.customer(funded.branch_id)

    own = await customer_stub.CheckLoanStanding(
        pb.CheckLoanStandingRequest(loan_id=funded.id, customer_id=funded.customer_id)
    )
    other = await customer_stub.CheckLoanStanding(
        pb.CheckLoanStandingRequest(loan_id=funded.id, customer_id=stranger.id)
    )
    missing = await customer_stub.CheckLoanStanding(
        pb.CheckLoanStandingRequest(loan_id="0193a000-0000-7000-8000-00000000ffff", customer_id=stranger.id)
    )

    assert (own.exists, own.belongs_to_customer, own.status) == (True, True, pb.APPLICATION_STATUS_FUNDED)
    assert own.principal.units == 10_000
    assert (other.exists, other.belongs_to_customer) == (True, False)
    assert (missing.exists, missing.belongs_to_customer) == (False, False)


async def test_a_loan_standing_check_is_logged_at_info_with_ids_and_the_outcome_only(
    customer_stub: Stub, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    funded = await application_in(factory, ApplicationStatus.FUNDED)
    stranger = await factory.customer(funded.branch_id)

    with caplog.at_level(logging.INFO, logger="services.customer.use_cases"):
        await customer_stub.CheckLoanStanding(pb.CheckLoanStandingRequest(loan_id=funded.id, customer_id=stranger.id))

    [record] = [r for r in caplog.records if r.getMessage() == "loan standing checked"]
    assert record.levelno == logging.INFO
    fields = {k: getattr(record, k) for k in ("loan_id", "customer_id", "exists", "belongs_to_customer", "status")}
    assert fields == {
        "loan_id": funded.id,
        "customer_id": stranger.id,
        "exists": True,
        "belongs_to_customer": False,
        "status": "FUNDED",
    }
    logged = str(record.__dict__)
    assert "10000" not in logged
    assert stranger.email not in logged
    assert stranger.name not in logged


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (
            "SELECT * FROM customer.loan_applications WHERE customer_id = $1 ORDER BY id DESC LIMIT 51",
            "loan_applications_customer_idx",
        ),
        (
            "SELECT * FROM customer.loan_applications WHERE officer_id = $1 ORDER BY id DESC LIMIT 51",
            "loan_applications_officer_idx",
        ),
        (
            "SELECT * FROM customer.loan_applications WHERE branch_id = $1 ORDER BY id DESC LIMIT 51",
            "loan_applications_branch_idx",
        ),
        ("SELECT * FROM customer.customers WHERE branch_id = $1 ORDER BY id LIMIT 51", "customers_branch_idx"),
        ("SELECT * FROM customer.loan_officers WHERE branch_id = $1 ORDER BY id LIMIT 51", "loan_officers_branch_idx"),
        (
            "SELECT officer_id, status, currency, count(*), sum(principal_minor) FROM customer.loan_applications"
            " WHERE branch_id = $1 GROUP BY GROUPING SETS ((status, currency), (officer_id, status, currency))",
            "loan_applications_portfolio_idx",
        ),
    ],
)
async def test_each_listed_query_is_served_by_its_index(db: asyncpg.Pool, query: str, index: str) -> None:
    async with db.acquire() as connection, connection.transaction():
        # With few rows the planner may pick any plan; pricing out the alternatives (sequential and bitmap
        # scans, explicit sorts) makes it show the index that serves both the filter and the order.
        await connection.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        await connection.execute("SET LOCAL enable_sort = off")
        plan = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {query}", DEMO_CUSTOMER_ID)
    assert f'"Index Name": "{index}"' in json.dumps(json.loads(plan))


async def test_migrations_and_demo_data_can_be_applied_again(postgres_dsn: str, db: asyncpg.Pool) -> None:
    await upgrade_to_head(postgres_dsn)
    repository = PostgresCustomerRepository(db)

    await seed_demo_data(repository)
    created_again = await seed_demo_data(repository)

    assert created_again == 0
    for application, actions in APPLICATIONS:
        stored = await repository.get_application(application.id)
        assert stored is not None
        assert stored.version == 1 + len(actions)
