"""`python -m migration status|switch|history`: read and change the live migration mode of a table.

Needs LOANBOOK_MIGRATION_POSTGRES_DSN. Every replica follows a switch within a second (LISTEN/NOTIFY); every
switch is audited with who, when, from and to. Moving to dynamo_only needs a clean full verification.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

import asyncpg

from chassis.errors import DomainError
from migration.control import ControlPlane, parse_stage
from migration.journal import Journal
from migration.schema import upgrade_to_head
from migration.stages import TABLES


async def run(args: argparse.Namespace, dsn: str) -> int:
    await upgrade_to_head(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        control = ControlPlane(pool)
        if args.command == "status":
            modes = await control.modes()
            print(f"{'table':<10} {'stage':<16} {'fallback':<9} {'journal backlog':<16} oldest pending")
            for table in TABLES:
                mode = modes.get(table)
                backlog = await Journal(pool, table).backlog()
                stage = mode.stage.value if mode else "postgres_only (not configured)"
                fallback = ("on" if mode.fallback else "off") if mode else "on"
                print(f"{table:<10} {stage:<16} {fallback:<9} {backlog.pending:<16} {backlog.oldest_age_seconds:.1f} s")
        elif args.command == "switch":
            wanted_fallback = None if args.fallback is None else args.fallback == "on"
            wanted_stage = parse_stage(args.stage) if args.stage else None
            mode = await control.change(
                args.table, stage=wanted_stage, fallback=wanted_fallback, who=args.who, reason=args.reason
            )
            state = "on" if mode.fallback else "off"
            print(f"{mode.table}: {mode.stage.value}, fallback {state} (revision {mode.revision})")
        else:
            for change in await control.history(args.table, args.limit):
                print(f"{change.changed_at:%Y-%m-%d %H:%M:%S} {change.changed_by}: "
                      f"{change.from_stage.value if change.from_stage else '-'} -> {change.to_stage.value}, "
                      f"fallback {change.from_fallback} -> {change.to_fallback} {change.reason}")  # fmt: skip
    finally:
        await pool.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m migration", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="each table's stage, fallback and journal backlog")
    switch = commands.add_parser("switch", help="set a table's stage and/or fallback")
    switch.add_argument("table", choices=TABLES)
    switch.add_argument(
        "stage", nargs="?", help="postgres_only|dual_write|shadow|dynamo_live|dynamo_primary|dynamo_only"
    )
    switch.add_argument("--fallback", choices=["on", "off"])
    switch.add_argument("--who", default=os.environ.get("LOANBOOK_OPERATOR") or getpass.getuser())
    switch.add_argument("--reason", default="")
    history = commands.add_parser("history", help="the audit trail of a table's mode")
    history.add_argument("table", choices=TABLES)
    history.add_argument("--limit", type=int, default=20)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "switch" and args.stage is None and args.fallback is None:
        parser.error("switch needs a stage, --fallback, or both")
    dsn = os.environ.get("LOANBOOK_MIGRATION_POSTGRES_DSN")
    if not dsn:
        print("set LOANBOOK_MIGRATION_POSTGRES_DSN to the PostgreSQL the services use", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args, dsn))
    except DomainError as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
