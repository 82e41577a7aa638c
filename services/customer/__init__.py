"""Customer and loan service: branches, officers, customers and loan applications on PostgreSQL."""
