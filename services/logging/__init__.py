"""Logging service: system logs on DynamoDB with a PostgreSQL fallback adapter."""
