"""The Typer applications the toolkit's command modules register on: `loanbook` and its `migrate` group."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="loanbook",
    help="Move payments and logs from PostgreSQL to DynamoDB without downtime, and load demo data.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold DSNs with passwords
)
migrate = typer.Typer(help="Plan, backfill, verify, switch and roll back migrated tables.", no_args_is_help=True)
app.add_typer(migrate, name="migrate")
