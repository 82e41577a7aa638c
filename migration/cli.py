"""`loanbook`: the operator's command line - `loanbook migrate ...` for the live migration, `loanbook seed`."""

from __future__ import annotations

from migration.toolkit.app import app


def main() -> None:
    # Importing the command modules registers their commands on the shared Typer apps.
    from migration.toolkit import commands  # noqa: F401

    app()


if __name__ == "__main__":
    main()
