"""End-to-end tests that run loanbook processes."""
