"""What a gRPC error says, as tests read it."""

from __future__ import annotations

import grpc


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The field names of the google.rpc.BadRequest detail of an INVALID_ARGUMENT error."""
    from google.rpc import error_details_pb2, status_pb2

    metadata = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(metadata["grpc-status-details-bin"])
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    return [violation.field for violation in bad_request.field_violations]
