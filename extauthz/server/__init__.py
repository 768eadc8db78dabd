"""The edges: the gRPC service, the admin HTTP port, metrics, decision logs, worker
processes and the protobuf conversion; everything below them is pure Python."""
