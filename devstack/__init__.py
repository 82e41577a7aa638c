"""Embedded local infrastructure: PostgreSQL and DynamoDB Local as supervised processes, plus the stack."""

import os

# devstack forks children (PostgreSQL as another user, so no vfork) from processes that already run gRPC
# (health probes, test clients). gRPC's fork handlers then abort the child between fork and exec when other
# threads are inside gRPC (seen: postgres exiting with SIGABRT during start-up in the test suite). Children here
# always exec at once, the case gRPC documents for turning the handlers off. It must be set before grpc loads.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
