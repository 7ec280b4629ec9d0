"""Tests on the real local stack: the Kafka broker and FerretDB (`make test` starts a fresh
one, scripts/run-tests.sh). Every test here is an `integration` test (conftest.py adds the
marker to any that lacks it), so `make test-unit` leaves them out.

corpus_run and demo_api are not test modules: they build the session's shared corpus run
and demo API (the fixtures in conftest.py)."""
