"""REST routes of the migration control plane (admins only): each table's mode, and changing it.

Same rules as gateway/customer_routes.py (shared parts in gateway/dependencies.py). The MigrationService is served
by the payment service, which holds the control plane's connection, so it is called on the payment channel. Stages
are the lowercase names of the brief (`dual_write`) in both directions; the gateway converts them to and from the
proto enum."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway import migration_models as m
from gateway.auth import AdminCaller
from gateway.dependencies import ERROR_RESPONSES, Migrations
from loanbook.migration.v1 import migration_pb2 as pb

router = APIRouter(prefix="/v1/admin", responses=ERROR_RESPONSES, tags=["migration"])


Table = Annotated[str, Path(min_length=1, max_length=64, description="a migrated table: payments or logs")]


def _rest_stages(value: Any) -> Any:
    """Protobuf JSON with every `stage` enum name as its REST stage (`MIGRATION_STAGE_DUAL_WRITE` → `dual_write`)."""
    if isinstance(value, dict):
        return {
            key: item.removeprefix(m.PROTO_STAGE_PREFIX).lower()
            if key == "stage" and isinstance(item, str)
            else _rest_stages(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rest_stages(item) for item in value]
    return value


def _json_response(message: Message) -> JSONResponse:
    content = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return JSONResponse(_rest_stages(content))


@router.get(
    "/migrations",
    response_model=m.ListTableModesResponse,
    summary="Every migrated table's stage, fallback and write-journal backlog (admins)",
)
async def list_table_modes(caller: AdminCaller, migrations: Migrations) -> JSONResponse:
    response = await migrations.call(migrations.stub.ListTableModes, pb.ListTableModesRequest(), caller)
    return _json_response(response)


@router.put(
    "/migrations/{table}",
    response_model=m.UpdateTableModeResponse,
    summary="Change a table's stage and/or read fallback (admins)",
    description="Fields left out stay as they are; the change is audited under the caller's subject and reaches "
    "every replica. An unknown table or stage is 400 naming `table` or `stage`; `dynamo_only` without a clean "
    "full verification of the table is 409 FAILED_PRECONDITION.",
)
async def update_table_mode(
    table: Table, body: m.UpdateTableModeBody, caller: AdminCaller, migrations: Migrations
) -> JSONResponse:
    request = pb.UpdateTableModeRequest(table=table, reason=body.reason)
    if body.stage is not None:
        request.stage = pb.MigrationStage.Value(body.stage.proto_name)
    if body.fallback is not None:
        request.fallback = body.fallback
    response = await migrations.call(migrations.stub.UpdateTableMode, request, caller)
    return _json_response(response)
