"""Embedded local infrastructure: PostgreSQL and DynamoDB Local as supervised processes, plus the stack."""
