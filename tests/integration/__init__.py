"""Integration tests against real PostgreSQL and DynamoDB Local."""
