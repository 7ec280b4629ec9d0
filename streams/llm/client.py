"""One OpenAI-compatible chat client per process, behind the call policy.

Every call: waits for the circuit breaker, takes a concurrency slot
(``max_concurrent_operations``), takes request and token budget (RPM/TPM), then sends.
Transient failures (429, 5xx, timeouts, connection errors, and auth/model errors that a
configuration fix will cure) are retried ``retry_attempts`` times with backoff honouring
Retry-After, then count as one failed call for the breaker and are tried again once it
lets calls through: the caller's message waits, it is never dead-lettered for an outage.
Only a request the API rejects for its content (400) fails permanently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import openai

from streams.instruments.metrics import (
    CIRCUIT_STATE,
    LLM_COST,
    LLM_IN_FLIGHT,
    LLM_LATENCY,
    LLM_REQUESTS,
    LLM_SPEND_CAP_WAITING,
    LLM_TOKENS,
)
from streams.llm.policy import (
    CircuitBreaker,
    CircuitState,
    SpendCap,
    TokenBucket,
    backoff_delay,
    parse_retry_after,
    request_pacer,
)
from streams.settings import Settings

log = logging.getLogger(__name__)


class LLMRejected(Exception):
    """The API refused this request for good (HTTP 400): retrying will not help."""


@dataclass(frozen=True)
class Completion:
    content: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str | None


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """~4 characters per token, the usual rule of thumb for English."""
    return sum(len(m.get("content", "")) for m in messages) // 4 + 16


def spend_cap(settings: Settings) -> SpendCap | None:
    """The spend windows of ``openai.max_cost_per_hour`` / ``per_day``, or None when neither is set."""
    o = settings.openai
    limits = tuple((window, cap) for window, cap in ((3600.0, o.max_cost_per_hour), (86_400.0, o.max_cost_per_day))
                   if cap is not None)
    # Exported at 0 even without a cap, so the dashboard and the alert see a series.
    waiting = LLM_SPEND_CAP_WAITING.labels(o.model)
    waiting.set(0)
    if not limits:
        return None
    return SpendCap(limits, on_wait=lambda on: waiting.inc() if on else waiting.dec())


class LLMClient:
    def __init__(self, settings: Settings) -> None:
        o = settings.openai
        g = settings.graphrag
        if o.api_key is None:
            raise ValueError("openai.api_key is not set")
        self.model = o.model
        self.temperature = o.temperature
        self.max_output_tokens = o.max_output_tokens
        self.retry_attempts = g.retry_attempts
        self.input_cost = o.input_cost_per_million / 1e6
        self.output_cost = o.output_cost_per_million / 1e6
        self._client = openai.AsyncOpenAI(api_key=o.api_key.get_secret_value(), base_url=o.base_url,
                                          timeout=o.timeout_seconds, max_retries=0)
        self.slots = asyncio.Semaphore(g.max_concurrent_operations)
        self.requests = request_pacer(o.requests_per_minute)
        self.tokens = TokenBucket(o.tokens_per_minute)
        self.breaker = CircuitBreaker(g.circuit_breaker_threshold, reset_seconds=o.circuit_reset_seconds,
                                      on_change=lambda s: CIRCUIT_STATE.labels(self.model).set(int(s)))
        CIRCUIT_STATE.labels(self.model).set(int(CircuitState.CLOSED))
        self.spend = spend_cap(settings)

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None,
                       schema_name: str = "result") -> Completion:
        """Send one chat completion under the call policy; retries until it gets an answer."""
        while True:
            await self.breaker.allow()
            try:
                result = await self._attempts(messages, json_schema, schema_name)
            except _Transient:
                # A failed call (its retries spent): counted as an error, and the breaker
                # decides when the next try may go out.
                LLM_REQUESTS.labels(self.model, "error").inc()
                await self.breaker.record_failure()
                continue
            await self.breaker.record_success()
            return result

    async def _attempts(self, messages: list[dict[str, str]], json_schema: dict[str, Any] | None,
                        schema_name: str) -> Completion:
        last: _Transient | None = None
        for attempt in range(self.retry_attempts + 1):
            if attempt:
                assert last is not None  # narrows a type  # nosec B101
                delay = backoff_delay(attempt - 1, retry_after=last.retry_after)
                log.info("LLM call failed (%s); retry %d/%d in %.1fs", last, attempt, self.retry_attempts, delay)
                await asyncio.sleep(delay)
            try:
                return await self._send(messages, json_schema, schema_name)
            except _Transient as exc:
                last = exc
        assert last is not None  # narrows a type  # nosec B101
        raise last

    async def _send(self, messages: list[dict[str, str]], json_schema: dict[str, Any] | None,
                    schema_name: str) -> Completion:
        estimate = estimate_tokens(messages) + self.max_output_tokens
        if self.spend is not None:
            await self.spend.allow()
        async with self.slots:
            await self.requests.acquire(1)
            await self.tokens.acquire(estimate)
            kwargs: dict[str, Any] = {}
            if json_schema is not None:
                kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": schema_name, "strict": True, "schema": json_schema}}
            LLM_IN_FLIGHT.inc()
            started = time.perf_counter()
            try:
                resp = await self._client.chat.completions.create(
                    model=self.model, messages=messages,  # type: ignore[arg-type]
                    temperature=self.temperature, max_tokens=self.max_output_tokens, **kwargs)
            except openai.BadRequestError as exc:
                LLM_REQUESTS.labels(self.model, "error").inc()
                raise LLMRejected(f"HTTP 400: {_error_text(exc)}") from None
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                LLM_REQUESTS.labels(self.model, "retry").inc()
                raise _Transient(f"{type(exc).__name__}: {exc}") from None
            except openai.APIStatusError as exc:
                LLM_REQUESTS.labels(self.model, "retry").inc()
                retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
                raise _Transient(f"HTTP {exc.status_code}: {_error_text(exc)}", retry_after) from None
            finally:
                LLM_IN_FLIGHT.dec()
                LLM_LATENCY.labels(self.model).observe(time.perf_counter() - started)
        usage = resp.usage
        prompt = usage.prompt_tokens if usage else estimate_tokens(messages)
        completion = usage.completion_tokens if usage else 0
        self.tokens.settle(estimate, prompt + completion)
        LLM_REQUESTS.labels(self.model, "ok").inc()
        LLM_TOKENS.labels(self.model, "prompt").inc(prompt)
        LLM_TOKENS.labels(self.model, "completion").inc(completion)
        cost = prompt * self.input_cost + completion * self.output_cost
        LLM_COST.labels(self.model).inc(cost)
        if self.spend is not None:
            self.spend.record(cost)
        choice = resp.choices[0] if resp.choices else None
        content = (choice.message.content or "") if choice else ""
        return Completion(content, prompt, completion, resp.model or self.model,
                          choice.finish_reason if choice else None)


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _error_text(exc: openai.APIStatusError) -> str:
    try:
        body = exc.response.json()
        return str(body.get("error", {}).get("message") or body)[:300]
    except (json.JSONDecodeError, ValueError, AttributeError):
        return str(exc)[:300]
