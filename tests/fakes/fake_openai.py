"""A local HTTP server that speaks the OpenAI chat completions API, for contract tests.

It answers the project's extraction prompts with a real extraction of the chunk text (the
offline rules), so a pipeline run against it builds a real graph; it answers community
report and query prompts from their content. Tests script faults (429 with Retry-After,
500, timeouts, invalid JSON, schema violations, 400), take it down and up again, hold every
answer until released, and read what it saw: requests, the maximum number of concurrent
requests, prompts, failed answers, when the first call came and the last answer went. Latency is ``delay`` seconds, or
lognormal (``latency_median``, ``latency_sigma``) like a real model's, and ``rpm`` answers
429 to a request beyond that many in the trailing 60 s, as a provider enforces its limit.

    python -m tests.fakes.fake_openai --port 8765     # standalone, for benchmarks and demos
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from streams.extraction.offline import extract_offline


@dataclass
class FakeState:
    delay: float = 0.0
    latency_median: float = 0.0  # > 0: each answer also takes a lognormal time with this median
    latency_sigma: float = 0.0  # the sigma of the log of that time
    rpm: int | None = None  # requests per trailing 60 s beyond which the answer is a 429
    faults: list[str] = field(default_factory=list)  # consumed one per request
    # (text, faults): consumed one per request whose messages contain the text, before ``faults``
    faults_for: list[tuple[str, list[str]]] = field(default_factory=list)
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    failed: int = 0  # answers with an error status (scripted faults and rpm 429s)
    first_call: float | None = None  # time.time() when the first request came in
    last_answer: float | None = None  # time.time() when the last answer was sent
    started: list[float] = field(default_factory=list)  # time.time() of every request, in order
    by_kind: Counter[str] = field(default_factory=Counter)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False  # between stop() and start(): a request that got through anyway is cut, not served
    answering: threading.Event = field(default_factory=lambda: _set(threading.Event()))  # clear: hold answers
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.faults_for.clear()
            self.requests = self.max_in_flight = self.failed = 0
            self.first_call = self.last_answer = None
            self.started.clear()
            self.by_kind.clear()
            self.bodies.clear()

    def latency(self) -> float:
        """Seconds the next answer takes: ``delay`` plus a lognormal draw when a median is set."""
        extra = 0.0
        if self.latency_median > 0:
            extra = random.lognormvariate(math.log(self.latency_median),  # simulated, not a secret  # nosec B311
                                          self.latency_sigma)
        return self.delay + extra

    def max_in_window(self, seconds: float) -> int:
        """The most requests that came in within any ``seconds`` (a sliding window)."""
        with self.lock:
            times = list(self.started)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= seconds:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


def _set(event: threading.Event) -> threading.Event:
    event.set()
    return event


def _usage(messages: list[dict[str, Any]], content: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
    completion = len(content) // 4 + 1
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def extraction_answer(messages: list[dict[str, Any]], schema: dict[str, Any]) -> str:
    last = str(messages[-1].get("content", ""))
    if last.startswith("Many entities and relations were probably missed"):
        return json.dumps({"entities": [], "relations": []})
    text = ""
    for m in messages:
        found = re.search(r"<<<\n(.*)\n>>>", str(m.get("content", "")), re.S)
        if found:
            try:  # the transcript is sent as a JSON string
                text = json.loads(found.group(1))
            except ValueError:  # a prompt that does not quote it: answer from the raw text
                text = found.group(1)
            break
    allowed = schema["properties"]["entities"]["items"]["properties"]["type"].get("enum") or ["CONCEPT"]
    result = extract_offline(text)
    entities = [{"name": e.name, "type": e.type if e.type in allowed else allowed[0],
                 "description": e.description} for e in result.entities]
    relations = [{"source": r.source, "target": r.target, "type": r.type, "description": r.description,
                  "strength": r.strength} for r in result.relations]
    return json.dumps({"entities": entities, "relations": relations})


def report_answer(messages: list[dict[str, Any]], schema: dict[str, Any]) -> str:
    """A community report built from the entity names in the prompt (issue 4)."""
    text = str(messages[-1].get("content", ""))
    names = re.findall(r"^- (?:entity )?([^:(\n]+?)(?: \(|:)", text, re.M)[:5] or ["these entities"]
    props = schema.get("properties", {})
    answer: dict[str, Any] = {}
    for key, spec in props.items():
        if spec.get("type") == "string":
            answer[key] = f"{key.title()} about {', '.join(names)}"
        elif spec.get("type") in ("number", "integer"):
            answer[key] = 5
        elif spec.get("type") == "array":
            item = spec.get("items", {})
            if item.get("type") == "object":
                answer[key] = [{k: ([] if v.get("type") == "array" else (names[0] if v.get("type") == "string" else 5))
                                for k, v in item.get("properties", {}).items()}]
            else:
                answer[key] = names
    return json.dumps(answer)


class _Handler(BaseHTTPRequestHandler):
    state: FakeState
    protocol_version = "HTTP/1.1"
    # An answer's headers and body go out in two writes: with Nagle's algorithm the body waited
    # for the client's delayed ACK of the headers, 40 ms added to every call.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        self.server.open_connections.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.open_connections.discard(self.connection)  # type: ignore[attr-defined]
        super().finish()

    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/_stats":
            s = self.state
            with s.lock:
                self._send(200, {"requests": s.requests, "max_in_flight": s.max_in_flight,
                                 "in_flight": s.in_flight, "by_kind": dict(s.by_kind), "failed": s.failed,
                                 "first_call": s.first_call, "last_answer": s.last_answer})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/_control":
            with self.state.lock:
                if "faults" in body:
                    self.state.faults[:] = list(body["faults"])
                if "delay" in body:
                    self.state.delay = float(body["delay"])
            self._send(200, {"ok": True})
            return
        if not self.path.endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"unknown path {self.path}"}})
            return
        s = self.state
        with s.lock:
            if s.down:
                # Read from a kept-alive connection just as stop() ran: the outage cuts it.
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            now = time.time()
            s.requests += 1
            s.in_flight += 1
            s.max_in_flight = max(s.max_in_flight, s.in_flight)
            if s.first_call is None:
                s.first_call = now
            messages = json.dumps(body.get("messages", []), ensure_ascii=False)
            scripted = next((fs for text, fs in s.faults_for if fs and text in messages), None)
            fault = scripted.pop(0) if scripted else s.faults.pop(0) if s.faults else ""
            if not fault and s.rpm is not None and _count_since(s.started, now - 60.0) >= s.rpm:
                fault = "429:1"
            s.started.append(now)
            s.bodies.append(body)
        try:
            self._answer(body, fault)
        finally:
            with s.lock:
                s.in_flight -= 1
                s.last_answer = time.time()

    def _answer(self, body: dict[str, Any], fault: str) -> None:
        s = self.state
        s.answering.wait()
        # The drawn latency is the whole answer's time, as a provider's is: the fake's own work
        # to build the answer (an offline extraction, a few ms, more on a loaded machine) is
        # part of it, not added to it, so a benchmark's ceiling (limit / mean latency) holds.
        due = time.time() + s.latency()
        if fault in ("500", "400") or fault.startswith("429"):
            with s.lock:
                s.failed += 1
        code, answer, headers = self._content(body, fault)
        time.sleep(max(0.0, due - time.time()))
        if fault.startswith("timeout"):
            time.sleep(float(fault.split(":", 1)[1]) if ":" in fault else 5.0)
        self._send(code, answer, headers)

    def _content(self, body: dict[str, Any], fault: str) -> tuple[int, dict[str, Any], dict[str, str] | None]:
        """The status, body and headers of the answer to ``body`` with ``fault``."""
        s = self.state
        if fault.startswith("429"):
            return 429, {"error": {"message": "Rate limit reached", "type": "requests"}}, \
                {"Retry-After": fault.split(":", 1)[1] if ":" in fault else "1"}
        if fault == "500":
            return 500, {"error": {"message": "The server had an error"}}, None
        if fault == "400":
            return 400, {"error": {"message": "This model's maximum context length is exceeded"}}, None
        messages = body.get("messages", [])
        fmt = body.get("response_format") or {}
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        kind = (fmt.get("json_schema") or {}).get("name") or "text"
        with s.lock:
            s.by_kind[kind] += 1
        if kind == "knowledge_graph":
            content = extraction_answer(messages, schema)
        elif schema:
            content = report_answer(messages, schema)
        else:
            content = "An answer based on the context [1]."
        if fault == "invalid_json":
            content = content[: len(content) // 2]
        elif fault == "schema_violation":
            content = json.dumps({"entities": [{"name": "x"}], "relations": "none"})
        return 200, {
            "id": f"chatcmpl-{s.requests}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": _usage(messages, content),
        }, None


def _count_since(times: list[float], since: float) -> int:
    """How many of the (ascending) ``times`` are after ``since``."""
    n = 0
    for t in reversed(times):
        if t <= since:
            break
        n += 1
    return n


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: of 32 clients connecting at once the rest had their
    # SYN dropped and retried a second later, a second added to their first call.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A connection cut by stop() (the simulated outage) is expected, not an error to print.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FakeOpenAI:
    """Runs the fake API in a background thread; ``stop()`` and ``start()`` simulate an outage."""

    def __init__(self, port: int = 0) -> None:
        self.state = FakeState()
        self.port = port
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        handler = type("FakeHandler", (_Handler,), {"state": self.state})
        self._server = _Server(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self._server.open_connections = set()  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        with self.state.lock:
            self.state.down = False
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """A real outage: no new connections, and the kept-alive ones are cut too (otherwise
        HTTP/1.1 clients with a connection pool would go on being served). Once it returns, no
        request is counted or answered, even one a kept-alive handler was already reading."""
        with self.state.lock:
            self.state.down = True
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            for conn in list(self._server.open_connections):  # type: ignore[attr-defined]
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
            self._server = None

    def hold(self) -> None:
        """Take requests but answer none until :meth:`release` (they count as in flight)."""
        self.state.answering.clear()

    def release(self) -> None:
        self.state.answering.set()

    def fault(self, *faults: str) -> None:
        with self.state.lock:
            self.state.faults.extend(faults)

    def fault_for(self, text: str, *faults: str) -> None:
        """Faults for the requests about one input only (their messages contain ``text``), in
        order: a script that holds however the stage interleaves its calls."""
        with self.state.lock:
            self.state.faults_for.append((text, list(faults)))

    def stats(self) -> dict[str, Any]:
        s = self.state
        with s.lock:
            return {"requests": s.requests, "in_flight": s.in_flight, "max_in_flight": s.max_in_flight,
                    "by_kind": dict(s.by_kind),
                    "failed": s.failed, "first_call": s.first_call, "last_answer": s.last_answer}

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--latency-median", type=float, default=0.0, help="lognormal latency: its median (s)")
    parser.add_argument("--latency-sigma", type=float, default=0.0, help="lognormal latency: its sigma")
    parser.add_argument("--rpm", type=int, default=None, help="answer 429 beyond this many requests per 60 s")
    args = parser.parse_args()
    fake = FakeOpenAI(args.port).start()
    fake.state.delay = args.delay
    fake.state.latency_median, fake.state.latency_sigma = args.latency_median, args.latency_sigma
    fake.state.rpm = args.rpm
    print(f"fake OpenAI API on {fake.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
