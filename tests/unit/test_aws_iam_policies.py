"""deploy/aws/iam-policies.yaml grants each process exactly the DynamoDB actions its code calls, on its tables only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import pytest

from tests.support.aws_templates import POLICIES_TEMPLATE, load
from tests.support.dynamodb_calls import (
    OUR_PACKAGES,
    UnitKey,
    modules_of,
    process_calls,
    units_of,
)

# The services create their tables only when LOANBOOK_<SERVICE>_DYNAMODB_CREATE_TABLES is on: development and tests,
# never production, where the tables are deploy/aws/dynamodb-tables.yaml's and the services only check them
# (chassis.dynamodb_tables.check_table). So the creating code is left out of their policies: no CreateTable,
# UpdateTable or UpdateTimeToLive.
DEVELOPMENT_ONLY: Final[tuple[UnitKey, ...]] = (
    ("chassis.dynamodb_tables", "ensure_table"),
    ("chassis.dynamodb_tables", "ensure_time_to_live"),
    ("chassis.dynamodb_tables", "_has_index"),
)


@dataclass(frozen=True)
class Process:
    policy: str  # logical id in the template
    entry: str  # the module the process starts from
    tables: tuple[str, ...]  # exports of the tables stack it may use
    excluded: tuple[UnitKey, ...] = ()
    role: str | None = None
    service_account: str | None = None


PROCESSES: Final = (
    Process(
        "PaymentServicePolicy",
        "services.payment.__main__",
        ("PaymentsTableArn",),
        DEVELOPMENT_ONLY,
        "PaymentServiceRole",
        "loanbook-payment",
    ),
    Process(
        "LoggingServicePolicy",
        "services.logging.__main__",
        ("LogsTableArn",),
        DEVELOPMENT_ONLY,
        "LoggingServiceRole",
        "loanbook-logging",
    ),
    # The `loanbook` CLI: `migrate ...` is the part that uses DynamoDB (`seed` only PostgreSQL).
    Process(
        "MigrationToolkitPolicy",
        "toolkit.cli",
        ("PaymentsTableArn", "LogsTableArn"),
        role="MigrationToolkitRole",
        service_account="loanbook-migration",
    ),
)
OPERATOR: Final = Process("ReadOnlyOperatorPolicy", "", ("PaymentsTableArn", "LogsTableArn"))
READ_ONLY_PREFIXES: Final = ("dynamodb:Describe", "dynamodb:Get", "dynamodb:BatchGet", "dynamodb:List")
READ_ONLY_ACTIONS: Final = frozenset({"dynamodb:Query", "dynamodb:Scan"})
TABLE_CHANGES: Final = frozenset(
    f"dynamodb:{action}"
    for action in ("CreateTable", "UpdateTable", "DeleteTable", "UpdateTimeToLive", "UpdateContinuousBackups")
)
INDEX_ACTIONS: Final = frozenset({"dynamodb:Query", "dynamodb:Scan"})  # the only ones an index ARN takes


def _resource_name(resource: Any) -> str:
    """A statement's resource, spelled by the tables stack's export it comes from: "PaymentsTableArn/index/*"."""
    if resource == "*":
        return "*"
    if isinstance(resource, dict) and "Fn::ImportValue" in resource:
        name = resource["Fn::ImportValue"]["Fn::Sub"]
        assert name.startswith("${TablesStackName}-"), name
        return str(name.removeprefix("${TablesStackName}-"))
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text, variables = resource["Fn::Sub"]
        for variable, value in variables.items():
            text = text.replace(f"${{{variable}}}", _resource_name(value))
        return str(text)
    raise AssertionError(f"unexpected resource {resource!r}")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(policy: str) -> list[tuple[set[str], set[str]]]:
    """(actions, resources) of each statement of the template's managed policy `policy`; all are Allow."""
    resource = load(POLICIES_TEMPLATE)["Resources"][policy]
    assert resource["Type"] == "AWS::IAM::ManagedPolicy"
    found = []
    for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource"} & set(statement)
        found.append((set(_listed(statement["Action"])), {_resource_name(r) for r in _listed(statement["Resource"])}))
    return found


def granted(policy: str) -> set[str]:
    return {action for actions, _ in statements(policy) for action in actions}


@pytest.mark.parametrize("process", PROCESSES, ids=lambda process: process.policy)
def test_each_policy_allows_exactly_the_dynamodb_actions_its_process_calls(process: Process) -> None:
    calls = process_calls(process.entry, process.excluded)
    assert not calls.unclassified, f"is the receiver a DynamoDB client? classify it: {calls.unclassified}"
    needed = calls.iam_actions()
    where = {call.operation: call.where for call in calls.calls}
    assert granted(process.policy) == needed, (
        f"{process.policy} should allow {sorted(needed)} (calls: {where}); "
        f"missing {sorted(needed - granted(process.policy))}, not needed {sorted(granted(process.policy) - needed)}"
    )


@pytest.mark.parametrize("process", [*PROCESSES, OPERATOR], ids=lambda process: process.policy)
def test_each_policy_reaches_only_its_own_tables(process: Process) -> None:
    tables = set(process.tables)
    indexes = {f"{table}/index/*" for table in tables}
    for actions, resources in statements(process.policy):
        if "*" in resources:
            # ListTables has no resource-level permission; nothing else may go with "*".
            assert (actions, resources) == ({"dynamodb:ListTables"}, {"*"})
        elif resources & indexes:
            assert resources <= indexes
            assert actions <= INDEX_ACTIONS
        else:
            assert resources == tables, f"{process.policy}: {sorted(actions)} on {sorted(resources)}"


def test_the_operator_reads_and_changes_nothing() -> None:
    actions = granted(OPERATOR.policy)
    assert {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:DescribeTable"} <= actions
    changing = {a for a in actions if not a.startswith(READ_ONLY_PREFIXES) and a not in READ_ONLY_ACTIONS}
    assert not changing


def test_no_policy_creates_changes_or_deletes_a_table() -> None:
    for process in [*PROCESSES, OPERATOR]:
        assert not granted(process.policy) & TABLE_CHANGES, process.policy


def test_every_dynamodb_call_in_the_code_belongs_to_a_process_or_is_development_only() -> None:
    """The reachability behind the policies misses nothing: each call site is some process's, or excluded."""
    reached = {call.where for process in PROCESSES for call in process_calls(process.entry, process.excluded).calls}
    excluded = set(DEVELOPMENT_ONLY)
    everywhere = {
        call.where
        for package in OUR_PACKAGES
        for module in modules_of(package)
        for unit in units_of(module)
        if (unit.module, unit.name) not in excluded
        for call in unit.calls
    }
    assert everywhere - reached == set()


def test_the_static_scan_sees_the_calls_it_must() -> None:
    """Spot checks of the scan itself: a call through functools.partial, a transaction's items, a wrapper."""
    migration = process_calls("toolkit.cli")
    assert {"BatchWriteItem", "BatchGetItem", "Scan", "DeleteItem"} <= migration.operations
    payment = process_calls("services.payment.__main__", DEVELOPMENT_ONLY)
    assert "TransactWriteItems" in payment.operations
    assert payment.transaction_items == {"Put"}
    assert "Scan" not in payment.operations  # chassis.dynamodb_wire.scan_page is the toolkit's, not the service's
    assert {"CreateTable", "UpdateTable", "UpdateTimeToLive"} <= process_calls("services.payment.__main__").operations


@pytest.mark.parametrize("process", PROCESSES, ids=lambda process: process.policy)
def test_each_role_is_assumed_by_its_service_account_alone_and_holds_its_policy(process: Process) -> None:
    template = load(POLICIES_TEMPLATE)
    assert process.role is not None
    role = template["Resources"][process.role]
    assert role["Type"] == "AWS::IAM::Role"
    assert role["Condition"] == "MakeRoles"
    assert role["Properties"]["ManagedPolicyArns"] == [{"Ref": process.policy}]
    text, variables = role["Properties"]["AssumeRolePolicyDocument"]["Fn::Sub"]
    trust = json.loads(text)
    (statement,) = trust["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {"Federated": "${OidcProviderArn}"}
    assert statement["Condition"] == {
        "StringEquals": {
            "${Issuer}:aud": "sts.amazonaws.com",
            "${Issuer}:sub": f"system:serviceaccount:${{Namespace}}:{process.service_account}",
        }
    }
    assert set(variables) == {"Issuer"}
