"""The migration toolkit: backfill, verify, switch and roll back migrated tables, and seed historical data."""
