"""Which migration modes need DynamoDB for a service to answer: the rule its readiness check follows."""

from __future__ import annotations

import pytest

from migration.stages import Stage, TableMode
from services.readiness import dynamodb_required


@pytest.mark.parametrize(
    ("stage", "fallback", "postgres_complete", "required"),
    [
        (Stage.POSTGRES_ONLY, True, True, False),
        (Stage.DUAL_WRITE, False, True, False),
        (Stage.SHADOW, False, True, False),
        (Stage.DYNAMO_LIVE, True, True, False),
        (Stage.DYNAMO_LIVE, False, True, True),
        (Stage.DYNAMO_PRIMARY, True, True, False),
        (Stage.DYNAMO_PRIMARY, False, True, True),
        (Stage.DYNAMO_PRIMARY, True, False, True),  # on the way back from dynamo_only: reads merge both stores
        (Stage.DYNAMO_ONLY, True, False, True),
        (Stage.DYNAMO_ONLY, False, False, True),
    ],
)
def test_dynamodb_is_required_only_where_a_request_cannot_be_answered_without_it(
    stage: Stage, fallback: bool, postgres_complete: bool, required: bool
) -> None:
    mode = TableMode("payments", stage, fallback, postgres_complete=postgres_complete)

    assert dynamodb_required(mode) is required
