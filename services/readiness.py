"""When a service whose table migrates needs DynamoDB to answer its requests, by the table's live mode."""

from __future__ import annotations

from migration.stages import Backend, TableMode


def dynamodb_required(mode: TableMode) -> bool:
    """Whether requests fail while DynamoDB is down in this mode.

    Not where PostgreSQL serves, nor where DynamoDB serves with reads falling back to a complete PostgreSQL (writes
    commit in PostgreSQL first and the relay copies them later). In dynamo_only DynamoDB takes every call, and on
    the way back from it (PostgreSQL incomplete) reads of recently written keys merge both stores.
    """
    policy = mode.policy
    if not policy.writes_postgres or not mode.postgres_complete:
        return True
    return policy.serves is Backend.DYNAMODB and not (mode.fallback and policy.fallback_possible)
