"""Live migration of a table from PostgreSQL to DynamoDB: stages, control plane, journal, relay, hybrid reads."""
