"""Test doubles shared by the tests and benchmarks: local HTTP servers that speak the OpenAI
and YouTube APIs (fake_openai, fake_youtube) and a real Prometheus under test control
(prometheus_harness). Not test modules: pytest collects nothing here."""
