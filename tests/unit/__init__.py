"""Unit tests: domain logic and pure functions, no I/O."""
