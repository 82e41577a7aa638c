"""loanbook test suite: unit (no I/O), integration (real stores), e2e (whole processes)."""
