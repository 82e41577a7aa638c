"""The MigrationService servicer refuses before it touches the control plane: identity, role, table and stage."""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest

from chassis.errors import InvalidArgument, PermissionDenied, Unauthenticated
from chassis.identity import Caller, Role, caller_metadata
from loanbook.migration.v1 import migration_pb2 as pb
from migration.api import STAGES, MigrationServicer
from migration.control import ControlPlane
from migration.stages import Stage


class MetadataOnly:
    """The one part of a servicer context the servicer reads: who is calling."""

    def __init__(self, caller: Caller | None) -> None:
        self._metadata = caller_metadata(caller) if caller else ()

    def invocation_metadata(self) -> Any:
        return self._metadata


def context_of(caller: Caller | None) -> grpc.aio.ServicerContext[Any, Any]:
    return cast("grpc.aio.ServicerContext[Any, Any]", MetadataOnly(caller))


def servicer() -> MigrationServicer:
    def no_journal(table: str) -> Any:
        raise AssertionError("not reached")

    return MigrationServicer(cast(ControlPlane, object()), no_journal)


ADMIN = Caller(Role.ADMIN, "ada")


def test_every_stage_has_its_proto_value() -> None:
    assert sorted(STAGES.values()) == list(range(1, len(Stage) + 1))


async def test_a_call_without_identity_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated):
        await servicer().ListTableModes(pb.ListTableModesRequest(), context_of(None))


@pytest.mark.parametrize("role", [Role.OFFICER, Role.SERVICE])
async def test_only_admins_are_let_in(role: Role) -> None:
    with pytest.raises(PermissionDenied):
        await servicer().UpdateTableMode(pb.UpdateTableModeRequest(table="payments"), context_of(Caller(role, "x")))


async def test_an_unknown_table_names_table() -> None:
    with pytest.raises(InvalidArgument) as error:
        await servicer().UpdateTableMode(pb.UpdateTableModeRequest(table="customers"), context_of(ADMIN))
    assert [v.field for v in error.value.violations] == ["table"]


@pytest.mark.parametrize("stage", [pb.MIGRATION_STAGE_UNSPECIFIED, 99])
async def test_an_unspecified_or_unknown_stage_names_stage(stage: int) -> None:
    request = pb.UpdateTableModeRequest(table="payments", stage=stage)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as error:
        await servicer().UpdateTableMode(request, context_of(ADMIN))
    assert [v.field for v in error.value.violations] == ["stage"]
