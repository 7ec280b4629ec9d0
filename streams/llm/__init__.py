"""LLM access: an OpenAI-compatible client behind rate limits, retries and a circuit breaker,
and a cache of answers (MongoDB, optionally Redis in front)."""
