"""`python -m toolkit`: the same command line as `loanbook` (`python -m toolkit migrate status`, ...)."""

from toolkit.cli import main

if __name__ == "__main__":
    main()
