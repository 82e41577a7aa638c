"""Payment stores against real PostgreSQL and DynamoDB Local."""
