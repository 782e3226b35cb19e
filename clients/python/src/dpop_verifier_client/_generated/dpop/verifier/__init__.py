"""Generated package. Do not edit: run scripts/gen-protos."""
