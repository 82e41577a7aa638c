"""schemathesis against the running gateway's /openapi.json: generated requests, valid and invalid, never get a
5xx, and every answer (status, content type, headers, body) is one the OpenAPI document describes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chassis.identity import Role
from tests.support.demo import CASEY, CASEY_FUNDED_LOAN
from tests.support.rest import bearer
from tests.support.system import RunningSystem

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MIN_CASES = 500
EXAMPLES_PER_OPERATION_AND_MODE = 12
# Routes a customer token reaches, with the path ids that make them answer with Casey's own data.
CUSTOMER_OPERATIONS: dict[str, dict[str, str]] = {
    "GET /v1/customers/{id}": {"id": CASEY},
    "PATCH /v1/customers/{id}": {"id": CASEY},
    "GET /v1/customers/{id}/payments": {"id": CASEY},
    "GET /v1/loans/{id}/payments": {"id": CASEY_FUNDED_LOAN},
    "POST /v1/payments": {},
    "GET /v1/payments/{id}": {},
    "POST /v1/applications": {},
    "GET /v1/applications": {},
    "GET /v1/applications/{id}": {},
    "POST /v1/applications/{id}/{action}": {},
    "GET /v1/branches": {},
}


@dataclass(frozen=True)
class Plan:
    """Whose token the generated requests carry, and which operations they go to."""

    role: Role
    operations: dict[str, dict[str, str]]  # operation label → fixed path parameters
    customer_id: str | None = None


@dataclass
class Tally:
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)


def operations_of(schema: schemathesis.BaseSchema) -> dict[str, schemathesis.APIOperation[Any, Any, Any, Any]]:
    """Every operation by label (`GET /v1/logs`); one the loader cannot make sense of fails the test."""
    operations = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the OpenAPI document has an invalid operation: {result.err()}"
        operations[result.ok().label] = result.ok()
    return operations


def fuzz(system: RunningSystem, plan: Plan, tally: Tally) -> None:
    """Runs every planned operation in both generation modes; each case is sent and validated by CHECKS."""
    schema = schemathesis.openapi.from_url(f"{system.gateway_url}/openapi.json")
    headers = bearer(system, plan.role, plan.customer_id)
    session = requests.Session()  # keep-alive: the gateway, not connection set-up, is what is exercised
    operations = operations_of(schema)
    missing = set(plan.operations) - set(operations)
    assert not missing, f"operations not in the OpenAPI document: {missing}"
    for label, path_parameters in plan.operations.items():
        # Negative cases include requests without the bearer token (schemathesis negates the security scheme):
        # those must be a documented 401, which is why some 401s show up under a valid token.
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = operations[label].as_strategy(mode, path_parameters=path_parameters or None)
            try:
                fuzz_operation(strategy, f"{plan.role.value} {label}", session, headers, tally)
            except Unsatisfiable:
                # Without parameters or a body (/healthz) there is nothing to make invalid; the count shows it.
                if mode is not schemathesis.GenerationMode.NEGATIVE:
                    raise


def fuzz_operation(
    strategy: SearchStrategy[schemathesis.Case[Any]],
    name: str,
    session: requests.Session,
    headers: dict[str, str],
    tally: Tally,
) -> None:
    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases every run: a failure here reproduces
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case[Any]) -> None:
        response = case.call_and_validate(session=session, headers=headers, checks=CHECKS, timeout=10)
        tally.cases[name] += 1
        tally.statuses[response.status_code] += 1

    run()


async def test_generated_requests_get_no_5xx_and_answers_that_match_the_openapi_document(
    running_system: RunningSystem,
) -> None:
    every_operation = set(operations_of(schemathesis.openapi.from_url(f"{running_system.gateway_url}/openapi.json")))
    plans = [
        # Admins reach every route but log ingestion, which is the service role's alone.
        Plan(Role.ADMIN, {label: {} for label in sorted(every_operation - {"POST /v1/logs"})}),
        Plan(Role.SERVICE, {"POST /v1/logs": {}}),
        Plan(Role.CUSTOMER, CUSTOMER_OPERATIONS, customer_id=CASEY),
    ]
    tally = Tally()
    started = time.monotonic()

    for plan in plans:
        # schemathesis calls are blocking; the gateway runs in its own process, so a worker thread is enough.
        await asyncio.to_thread(fuzz, running_system, plan, tally)

    total = sum(tally.cases.values())
    print(f"{total} cases in {time.monotonic() - started:.1f}s; statuses {dict(sorted(tally.statuses.items()))}")
    assert total >= MIN_CASES, f"only {total} cases ran: {tally.cases}"
    # Not only refusals: the generated requests reach the services and come back with data.
    assert sum(count for status, count in tally.statuses.items() if 200 <= status < 300) >= 50, tally.statuses
    assert set(tally.cases) >= {f"customer {label}" for label in CUSTOMER_OPERATIONS}
