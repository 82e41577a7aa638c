"""Pydantic mirrors of loanbook.migration.v1's protobuf JSON (lowerCamelCase), for validation and OpenAPI.

The same approach as gateway/customer_models.py; tests/unit/test_customer_models.py checks these mirrors against
the messages field by field. REST-only choices: the table is in the path, and a stage is written as in the brief
and the settings file (`dual_write`), in requests and responses alike, rather than as the proto enum's value name
(`MIGRATION_STAGE_DUAL_WRITE`); the gateway converts.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from gateway.customer_models import Int64String, ProtoJson, Reason

PROTO_STAGE_PREFIX = "MIGRATION_STAGE_"


# migration.stages.Stage's values again (the unit test pins them equal), under the REST API's own name in the OpenAPI
# document and with the proto conversion: an enum cannot extend one that has members, and one built by a call from
# Stage would be opaque to the type checker. No docstring: it would become the schema's description.
class MigrationStage(StrEnum):
    POSTGRES_ONLY = "postgres_only"
    DUAL_WRITE = "dual_write"
    SHADOW = "shadow"
    DYNAMO_LIVE = "dynamo_live"
    DYNAMO_PRIMARY = "dynamo_primary"
    DYNAMO_ONLY = "dynamo_only"

    @property
    def proto_name(self) -> str:
        return PROTO_STAGE_PREFIX + self.value.upper()


class TableMode(ProtoJson):
    table: str = ""
    stage: MigrationStage | None = None
    fallback: bool = Field(default=False, description="reads served by DynamoDB fall back to PostgreSQL on failure")
    revision: Int64String = Field(default="0", description="bumped by every change")
    update_time: datetime | None = None
    updated_by: str = ""
    journal_backlog: Int64String = Field(default="0", description="journal entries DynamoDB does not hold yet")
    oldest_pending_seconds: float = Field(default=0.0, description="age of the oldest of them; 0 when none")
    watchdog_enabled: bool = Field(
        default=False, description="whether the watchdog may move the table back to shadow when DynamoDB reads go bad"
    )


class ListTableModesResponse(ProtoJson):
    table_modes: list[TableMode] = []


class UpdateTableModeResponse(ProtoJson):
    table_mode: TableMode | None = None


class UpdateTableModeBody(ProtoJson):
    """UpdateTableModeRequest without `table` (the path). A field left out stays as it is."""

    stage: MigrationStage | None = None
    fallback: bool | None = None
    reason: Reason = ""
