"""`python -m migration`: the same command line as `loanbook` (`python -m migration migrate status`, ...)."""

from migration.cli import main

if __name__ == "__main__":
    main()
