"""REST/JSON gateway in front of the loanbook gRPC services."""
