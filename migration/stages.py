"""The migration stages of a table and what each one means for writes and reads."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Backend(StrEnum):
    POSTGRES = "postgres"
    DYNAMODB = "dynamodb"


class Stage(StrEnum):
    POSTGRES_ONLY = "postgres_only"
    DUAL_WRITE = "dual_write"
    SHADOW = "shadow"
    DYNAMO_LIVE = "dynamo_live"
    DYNAMO_PRIMARY = "dynamo_primary"
    DYNAMO_ONLY = "dynamo_only"


# Migrated tables; each is controlled independently.
TABLES = ("payments", "logs")

ORDER = list(Stage)


@dataclass(frozen=True)
class StagePolicy:
    writes_postgres: bool
    writes_dynamo: bool
    serves: Backend
    # The other store is read too (sampled) and compared with what was served.
    compares: bool

    @property
    def fallback_possible(self) -> bool:
        """Reads can fall back to PostgreSQL only while PostgreSQL still receives every write."""
        return self.writes_postgres and self.serves is Backend.DYNAMODB


POLICIES: dict[Stage, StagePolicy] = {
    Stage.POSTGRES_ONLY: StagePolicy(True, False, Backend.POSTGRES, compares=False),
    Stage.DUAL_WRITE: StagePolicy(True, True, Backend.POSTGRES, compares=False),
    Stage.SHADOW: StagePolicy(True, True, Backend.POSTGRES, compares=True),
    Stage.DYNAMO_LIVE: StagePolicy(True, True, Backend.DYNAMODB, compares=True),
    Stage.DYNAMO_PRIMARY: StagePolicy(True, True, Backend.DYNAMODB, compares=False),
    Stage.DYNAMO_ONLY: StagePolicy(False, True, Backend.DYNAMODB, compares=False),
}


@dataclass(frozen=True)
class TableMode:
    """The live setting of one table: its stage and whether reads fall back to PostgreSQL.

    `postgres_complete`: whether PostgreSQL holds every acknowledged write. It does not in dynamo_only, nor on the
    way back from it until a reverse sync has copied those writes back and a clean full verification confirmed it;
    meanwhile no read may be answered by PostgreSQL alone (see migration.hybrid).
    """

    table: str
    stage: Stage
    fallback: bool
    revision: int = 0
    postgres_complete: bool = True

    @property
    def policy(self) -> StagePolicy:
        return POLICIES[self.stage]


def stage_from_seed_flags(read_from_dynamodb: bool) -> Stage:
    """The seed's switch: ReadFromDynamoDB=false is dual-write, true is DynamoDB serving with PostgreSQL kept."""
    return Stage.DYNAMO_LIVE if read_from_dynamodb else Stage.DUAL_WRITE
