"""Payment service: payment records on DynamoDB with a PostgreSQL fallback adapter."""
