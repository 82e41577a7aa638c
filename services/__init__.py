"""The loanbook gRPC microservices, one package per bounded context."""
