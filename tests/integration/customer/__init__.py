"""Customer service through its gRPC API against real PostgreSQL."""
