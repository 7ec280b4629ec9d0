"""Tests that need no running services (`make test-unit`: pytest -m "not integration").

They may start local processes of their own (the CLI, a local Prometheus, the fakes in
tests/fakes), but never the Kafka broker or FerretDB."""
