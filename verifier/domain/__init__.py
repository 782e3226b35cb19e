"""The shared vocabulary, the floor every other package stands on: reasons and their wire
mapping, the request-facts and decision model, the route table, target-URI normalisation and the
ports. It imports nothing of ours (docs/architecture.md)."""
