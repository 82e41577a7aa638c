"""Code every loanbook process shares: configuration, logging, telemetry, gRPC server bootstrap, store clients."""
