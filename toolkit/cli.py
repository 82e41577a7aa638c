"""`loanbook`: the operator's command line - `loanbook migrate ...`, `loanbook schema ...`, `loanbook seed`,
`loanbook cost`."""

from __future__ import annotations

import sys

import typer

from toolkit.cost.command import cost_command
from toolkit.migrate_commands import migrate
from toolkit.promote_command import promote
from toolkit.schema_command import schema
from toolkit.seed_command import seed_command
from toolkit.telemetry import command_path, configure_cli_telemetry, traced_command

app = typer.Typer(
    name="loanbook",
    help="Move payments and logs from PostgreSQL to DynamoDB without downtime, and load demo data.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold DSNs with passwords
)
migrate.command()(promote)
app.add_typer(migrate, name="migrate")
app.add_typer(schema, name="schema")
app.command("seed")(seed_command)
app.command("cost")(cost_command)


def main() -> None:
    telemetry = configure_cli_telemetry()
    command = typer.main.get_command(app)
    try:
        with traced_command(command_path(command, sys.argv[1:])):
            command.main(prog_name="loanbook")
    finally:
        telemetry.shutdown()  # flushes the run's spans and last metrics before the process exits


if __name__ == "__main__":
    main()
