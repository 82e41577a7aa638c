"""The MigrationService gRPC servicer: the control plane for admins, each table's mode with its journal backlog.

Who changes a mode is the caller the gateway authenticated (identity metadata, see chassis/identity.py): no
identity is UNAUTHENTICATED, any role but admin PERMISSION_DENIED. Handlers raise domain errors; the chassis
interceptor maps them (an unknown table or stage is INVALID_ARGUMENT naming the field, a refused guard
FAILED_PRECONDITION with its message).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from chassis.errors import FieldViolation, InvalidArgument, PermissionDenied, Unauthenticated
from chassis.identity import Caller, Role, caller_from_metadata
from loanbook.migration.v1 import migration_pb2 as pb
from loanbook.migration.v1 import migration_pb2_grpc
from migration.control import ControlPlane, ModeRecord, check_table
from migration.journal import Backlog, Journal
from migration.stages import Stage

Context = grpc.aio.ServicerContext[Any, Any]

# A switch to dynamo_only waits this long at most for the journal to drain: well within the gateway's 5 s deadline
# for the whole call (the guards and the change itself take milliseconds).
DRAIN_SECONDS = 2.0

STAGES = {stage: pb.MigrationStage.Value(f"MIGRATION_STAGE_{stage.value.upper()}") for stage in Stage}
FROM_PROTO: dict[int, Stage] = {value: stage for stage, value in STAGES.items()}


def _stage(value: int) -> Stage:
    stage = FROM_PROTO.get(value)
    if stage is None:
        choices = ", ".join(pb.MigrationStage.Name(v) for v in STAGES.values())
        raise InvalidArgument([FieldViolation("stage", f"unknown stage {value}; one of {choices}")])
    return stage


def _admin(context: Context) -> Caller:
    caller = caller_from_metadata(context.invocation_metadata())
    if caller is None:
        raise Unauthenticated("no caller identity")
    if caller.role is not Role.ADMIN:
        raise PermissionDenied("migration control is for admins")
    return caller


def fill_table_mode(
    message: pb.TableMode, record: ModeRecord, backlog: Backlog, watchdog_enabled: bool
) -> pb.TableMode:
    mode = record.mode
    message.table = mode.table
    message.stage = STAGES[mode.stage]
    message.fallback = mode.fallback
    message.revision = mode.revision
    message.update_time.FromDatetime(record.updated_at)
    message.updated_by = record.updated_by
    message.journal_backlog = backlog.pending
    message.oldest_pending_seconds = backlog.oldest_age_seconds
    message.watchdog_enabled = watchdog_enabled
    return message


class MigrationServicer(migration_pb2_grpc.MigrationServiceServicer):
    def __init__(self, control: ControlPlane, journal: Callable[[str], Journal]) -> None:
        self._control = control
        self._journal = journal

    async def ListTableModes(self, request: pb.ListTableModesRequest, context: Context) -> pb.ListTableModesResponse:
        _admin(context)
        response = pb.ListTableModesResponse()
        for record in await self._control.records():
            backlog = await self._journal(record.mode.table).backlog()
            watchdog = await self._control.watchdog_enabled(record.mode.table)
            fill_table_mode(response.table_modes.add(), record, backlog, watchdog)
        return response

    async def UpdateTableMode(self, request: pb.UpdateTableModeRequest, context: Context) -> pb.UpdateTableModeResponse:
        caller = _admin(context)
        table = check_table(request.table)
        stage = _stage(request.stage) if request.HasField("stage") else None
        fallback = request.fallback if request.HasField("fallback") else None
        await self._control.change(
            table,
            stage=stage,
            fallback=fallback,
            who=f"{caller.role.value}:{caller.subject}",
            reason=request.reason,
            drain_seconds=DRAIN_SECONDS,
        )
        record = await self._control.record(table)
        response = pb.UpdateTableModeResponse()
        backlog, watchdog = await self._journal(table).backlog(), await self._control.watchdog_enabled(table)
        fill_table_mode(response.table_mode, record, backlog, watchdog)
        return response
