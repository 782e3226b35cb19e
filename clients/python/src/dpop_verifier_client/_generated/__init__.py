"""Generated gRPC/protobuf stubs. Do not edit: edit protos/, run scripts/gen-protos.

Generated with grpcio-tools 1.85.1.
"""
