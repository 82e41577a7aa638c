"""A promotion plan: several tables promoted together from one TOML file, each with its own target and guards.

window_seconds = 300            # defaults for every table (as `promote`'s options)
poll_seconds = 5
evidence_timeout_seconds = 1800

[tables.payments]
to = "dynamo_primary"

[tables.logs]
to = "dynamo_live"
window_seconds = 600
[tables.logs.guards]
max_latency_ratio = 5
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chassis.errors import FieldViolation, InvalidArgument
from migration.stages import Stage
from toolkit.promotion import PromotionOptions

Ratio = Annotated[float, Field(ge=0, le=1)]


class GuardsPlan(BaseModel):
    """Limits that differ from the defaults (toolkit.guards.GuardLimits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_mismatch_ratio: Ratio | None = None
    min_comparisons: Annotated[int, Field(ge=1)] | None = None
    max_fallback_ratio: Ratio | None = None
    max_error_ratio: Ratio | None = None
    max_latency_ratio: Annotated[float, Field(ge=1)] | None = None
    min_calls_per_backend: Annotated[int, Field(ge=1)] | None = None
    max_journal_age_seconds: Annotated[float, Field(ge=0)] | None = None


class Timing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window_seconds: Annotated[float, Field(ge=1)] | None = None
    poll_seconds: Annotated[float, Field(ge=0.2)] | None = None
    evidence_timeout_seconds: Annotated[float, Field(ge=0)] | None = None
    cool_down_seconds: Annotated[float, Field(ge=0)] | None = None


class TablePlan(Timing):
    to: Stage = Stage.DYNAMO_PRIMARY
    guards: GuardsPlan = GuardsPlan()


class PromotionPlan(Timing):
    tables: Annotated[dict[Literal["payments", "logs"], TablePlan], Field(min_length=1)]


def load_plan(path: Path, base: PromotionOptions) -> dict[str, PromotionOptions]:
    """Each table's options: `base` (the command's) overridden by the plan's defaults, then by the table's own.
    Raises InvalidArgument naming the field and the reason for anything the plan gets wrong."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InvalidArgument([FieldViolation(str(path), f"cannot read the plan: {error}")]) from None
    try:
        plan = PromotionPlan.model_validate(document)
    except ValidationError as error:
        raise InvalidArgument(
            [
                FieldViolation(
                    ".".join(str(part) for part in issue["loc"] if part != "[key]") or str(path), issue["msg"]
                )
                for issue in error.errors()
            ]
        ) from None
    options: dict[str, PromotionOptions] = {}
    for table, entry in plan.tables.items():
        timing = {
            name: value
            for layer in (plan, entry)
            for name, value in layer.model_dump(include=set(Timing.model_fields)).items()
            if value is not None
        }
        limits = replace(base.limits, **entry.guards.model_dump(exclude_none=True))
        options[table] = replace(base, target=entry.to, limits=limits, **timing)
    return options
