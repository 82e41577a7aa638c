"""The REST models mirror the customer, payment, logging and migration contexts' protobuf messages field by field, in
protobuf's JSON names."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.type import date_pb2, money_pb2
from pydantic import BaseModel

from gateway import customer_models as m
from gateway import logging_models as lm
from gateway import migration_models as mm
from gateway import payment_models as pm
from loanbook.customer.v1 import customer_pb2 as pb
from loanbook.logging.v1 import logging_pb2 as lpb
from loanbook.migration.v1 import migration_pb2 as mpb
from loanbook.payment.v1 import payment_pb2 as ppb
from migration.stages import Stage

# (model, message, JSON fields of the message that REST takes from the path or a header instead of the body)
MIRRORS: list[tuple[type[BaseModel], Any, set[str]]] = [
    (m.Money, money_pb2.Money.DESCRIPTOR, set()),
    (m.MoneyOut, money_pb2.Money.DESCRIPTOR, set()),
    (m.Date, date_pb2.Date.DESCRIPTOR, set()),
    (m.Branch, pb.Branch.DESCRIPTOR, set()),
    (m.LoanOfficer, pb.LoanOfficer.DESCRIPTOR, set()),
    (m.Customer, pb.Customer.DESCRIPTOR, set()),
    (m.LoanApplication, pb.LoanApplication.DESCRIPTOR, set()),
    (m.ListBranchesResponse, pb.ListBranchesResponse.DESCRIPTOR, set()),
    (m.ListLoanOfficersResponse, pb.ListLoanOfficersResponse.DESCRIPTOR, set()),
    (m.ListCustomersResponse, pb.ListCustomersResponse.DESCRIPTOR, set()),
    (m.ListLoanApplicationsResponse, pb.ListLoanApplicationsResponse.DESCRIPTOR, set()),
    (m.StatusTotals, pb.StatusTotals.DESCRIPTOR, set()),
    (m.OfficerPortfolio, pb.OfficerPortfolio.DESCRIPTOR, set()),
    (m.GetBranchPortfolioResponse, pb.GetBranchPortfolioResponse.DESCRIPTOR, set()),
    (m.CreateBranchBody, pb.CreateBranchRequest.DESCRIPTOR, set()),
    (m.CreateLoanOfficerBody, pb.CreateLoanOfficerRequest.DESCRIPTOR, set()),
    (m.CreateCustomerBody, pb.CreateCustomerRequest.DESCRIPTOR, set()),
    (m.UpdateCustomerBody, pb.UpdateCustomerRequest.DESCRIPTOR, {"customerId"}),
    (m.SubmitLoanApplicationBody, pb.SubmitLoanApplicationRequest.DESCRIPTOR, set()),
    (m.TransitionBody, pb.TransitionLoanApplicationRequest.DESCRIPTOR, {"applicationId", "action"}),
    (pm.Payment, ppb.Payment.DESCRIPTOR, set()),
    (pm.RecordPaymentResponse, ppb.RecordPaymentResponse.DESCRIPTOR, set()),
    (pm.ListCustomerPaymentsResponse, ppb.ListCustomerPaymentsResponse.DESCRIPTOR, set()),
    (pm.ListLoanPaymentsResponse, ppb.ListLoanPaymentsResponse.DESCRIPTOR, set()),
    (pm.RecordPaymentBody, ppb.RecordPaymentRequest.DESCRIPTOR, {"idempotencyKey"}),
    (pm.ReversePaymentBody, ppb.ReversePaymentRequest.DESCRIPTOR, {"paymentId"}),
    (lm.LogEntry, lpb.LogEntry.DESCRIPTOR, set()),
    (lm.LogEntryBody, lpb.LogEntry.DESCRIPTOR, set()),
    (lm.WriteLogsBody, lpb.WriteLogsRequest.DESCRIPTOR, set()),
    (lm.WriteLogsResponse, lpb.WriteLogsResponse.DESCRIPTOR, set()),
    (lm.QueryLogsResponse, lpb.QueryLogsResponse.DESCRIPTOR, set()),
    (lm.LogsPage, lpb.QueryLogsResponse.DESCRIPTOR, set()),
    (lm.GetTraceLogsResponse, lpb.GetTraceLogsResponse.DESCRIPTOR, set()),
    (mm.TableMode, mpb.TableMode.DESCRIPTOR, set()),
    (mm.ListTableModesResponse, mpb.ListTableModesResponse.DESCRIPTOR, set()),
    (mm.UpdateTableModeResponse, mpb.UpdateTableModeResponse.DESCRIPTOR, set()),
    (mm.UpdateTableModeBody, mpb.UpdateTableModeRequest.DESCRIPTOR, {"table"}),
]


@pytest.mark.parametrize(("model", "message", "from_path"), MIRRORS, ids=[model.__name__ for model, _, _ in MIRRORS])
def test_a_model_has_exactly_the_json_fields_of_its_message(
    model: type[BaseModel], message: Descriptor, from_path: set[str]
) -> None:
    aliases = {field.alias or name for name, field in model.model_fields.items()}

    assert aliases == {field.json_name for field in message.fields} - from_path


def test_the_status_enum_has_exactly_the_proto_value_names() -> None:
    assert {status.value for status in m.ApplicationStatus} == set(pb.ApplicationStatus.keys())


def test_the_payment_enums_have_exactly_the_proto_value_names() -> None:
    assert {method.value for method in pm.PaymentMethod} == set(ppb.PaymentMethod.keys())
    assert {status.value for status in pm.PaymentStatus} == set(ppb.PaymentStatus.keys())


def test_the_log_levels_have_exactly_the_proto_value_names() -> None:
    assert {level.value for level in lm.LogLevel} == set(lpb.LogLevel.keys())


def test_a_log_batch_becomes_protobuf_json_that_the_proto_parses_and_a_naive_time_is_refused() -> None:
    body = lm.WriteLogsBody.model_validate(
        {
            "entries": [
                {
                    "service": "s",
                    "level": "LOG_LEVEL_ERROR",
                    "time": "2026-01-31T10:00:00+01:00",
                    "attributes": {"http_route": "/x"},
                    "traceId": "a" * 32,
                }
            ]
        }
    )

    request = json_format.ParseDict(body.to_proto_json(), lpb.WriteLogsRequest())

    assert request.entries[0].level == lpb.LOG_LEVEL_ERROR
    assert request.entries[0].time.ToJsonString() == "2026-01-31T09:00:00Z"
    assert dict(request.entries[0].attributes) == {"http_route": "/x"}
    assert request.entries[0].trace_id == "a" * 32
    with pytest.raises(ValueError, match="timezone"):
        lm.WriteLogsBody.model_validate({"entries": [{"time": "2026-01-31T10:00:00"}]})
    with pytest.raises(ValueError, match="Input should be"):
        lm.WriteLogsBody.model_validate({"entries": [{"level": "LOUD"}]})


def test_the_rest_stages_are_exactly_the_proto_stages_in_lowercase() -> None:
    assert {stage.proto_name for stage in mm.MigrationStage} == set(mpb.MigrationStage.keys()) - {
        "MIGRATION_STAGE_UNSPECIFIED"
    }


def test_the_rest_stages_are_the_control_planes() -> None:
    assert [stage.value for stage in mm.MigrationStage] == [stage.value for stage in Stage]


def test_a_payment_body_without_a_time_zone_is_refused_and_a_full_one_becomes_protobuf_json() -> None:
    body = pm.RecordPaymentBody.model_validate(
        {"loanId": "l", "amount": {"currencyCode": "USD", "units": "25"}, "paidTime": "2026-01-31T10:00:00Z"}
    )

    assert body.to_proto_json() == {
        "loanId": "l",
        "amount": {"currencyCode": "USD", "units": 25},
        "paidTime": "2026-01-31T10:00:00Z",
    }
    with pytest.raises(ValueError, match="timezone"):
        pm.RecordPaymentBody.model_validate({"paidTime": "2026-01-31T10:00:00"})
    with pytest.raises(ValueError, match="Extra inputs"):
        pm.RecordPaymentBody.model_validate({"idempotencyKey": "k"})  # the key is the Idempotency-Key header


def test_every_rest_action_is_a_proto_action_and_every_proto_action_has_a_route() -> None:
    assert {action.proto_name for action in m.ApplicationAction} == set(pb.ApplicationAction.keys()) - {
        "APPLICATION_ACTION_UNSPECIFIED"
    }


def test_unknown_fields_are_refused_and_known_ones_become_protobuf_json() -> None:
    body = m.SubmitLoanApplicationBody.model_validate(
        {"customerId": "c", "principal": {"currencyCode": "EUR", "units": "1500"}, "termMonths": 12}
    )

    assert body.to_proto_json() == {
        "customerId": "c",
        "principal": {"currencyCode": "EUR", "units": 1500},
        "termMonths": 12,
    }
    with pytest.raises(ValueError, match="Extra inputs"):
        m.CreateBranchBody.model_validate({"code": "B1", "colour": "red"})
    with pytest.raises(ValueError, match="Extra inputs"):
        m.CreateBranchBody.model_validate({"branch_code": "B1"})  # proto names are not the REST names
