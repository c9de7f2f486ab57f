"""An OpenAI-compatible HTTP server for tests: the sanctioned stand-in for a paid LLM service.

It speaks just enough of the OpenAI wire protocol for MetaGPT's real ``OpenAILLM`` provider
(and therefore the real ``openai`` SDK and httpx) to talk to it over a real socket:

* ``POST /v1/chat/completions``: non-streaming (JSON with ``usage``) and streaming (SSE
  chunks, a finish chunk, then a chunk with empty ``choices`` carrying ``usage``, then
  ``[DONE]``).
* ``GET /v1/models``.

Usage::

    with LlmServer() as server:
        config = {"api_type": "openai", "model": "gpt-4o-mini",
                  "base_url": server.base_url, "api_key": "sk-test"}
        ...
        server.fail(times=2)        # next two chat requests get HTTP 500
        server.stall()              # next chat request is accepted and never answered
        server.delay(0.5)           # next chat request is answered after 0.5 s
        server.garbage()            # next chat request gets a malformed body
        server.token_delay = 0.05   # streamed answers trickle out chunk by chunk
        server.chat_bodies          # every chat request body received, in order

Faults queue up first in, first out; ``times=None`` makes a fault permanent.
Token counts are whitespace-separated words (see ``count_words``) so tests can assert them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest

Responder = Callable[[dict[str, Any]], str]
FaultKind = Literal["fail", "stall", "delay", "garbage"]

FORMAT_EXAMPLE_MARKER = "## format example"
_CONTENT_BLOCK = re.compile(r"\[CONTENT\].*?\[/CONTENT\]", re.DOTALL)
# Keeps each word's trailing whitespace so joining the chunks gives back the exact text.
_STREAM_PIECE = re.compile(r"\s*\S+\s*|\s+")

DEFAULT_CODE_ANSWER = (
    '```python\ndef main() -> None:\n    print("hello from the test LLM")\n\n\n'
    'if __name__ == "__main__":\n    main()\n```'
)


def count_words(text: str) -> int:
    """The server's deterministic "token" count: whitespace-separated words."""
    return len(text.split())


def message_text(messages: list[dict[str, Any]]) -> str:
    """All text of a chat request's messages, joined by newlines (image parts are ignored)."""
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "\n".join(parts)


def prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt token count the server reports for a request body."""
    return count_words(message_text(body.get("messages") or []))


def default_responder(body: dict[str, Any]) -> str:
    """Echo an ActionNode's format example, otherwise answer with a tiny python program.

    Echoing the ``[CONTENT]...[/CONTENT]`` block that follows ``## format example`` gives
    MetaGPT a structurally valid answer for every ActionNode without knowing its schema.
    """
    messages = body.get("messages") or []
    last = str(messages[-1].get("content", "")) if messages else ""
    text = message_text(messages)
    marker = text.rfind(FORMAT_EXAMPLE_MARKER)
    if marker >= 0:
        block = _CONTENT_BLOCK.search(text, marker)
        if block:
            return block.group(0)
    if "code" in last.lower() or "```" in last:
        return DEFAULT_CODE_ANSWER
    return "This is a short plain answer from the test LLM server."


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any = None  # parsed JSON, or None when the body was empty or not JSON


@dataclass
class _Fault:
    kind: FaultKind
    remaining: int | None  # None: never used up
    status: int = 500
    seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class _HttpServer(ThreadingHTTPServer):
    # Stalled handlers block until stop(); daemon threads keep them from holding up shutdown.
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: LlmServer, address: tuple[str, int]) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so the SDK's keep-alive pool and chunked streaming behave as with a real service.
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def owner(self) -> LlmServer:
        return self.server.owner

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def _record(self, raw: bytes) -> RecordedRequest:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = RecordedRequest(
            self.command, self._path(), {k.lower(): v for k, v in self.headers.items()}, raw, body
        )
        self.owner._record(request)
        return request

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def do_GET(self) -> None:
        self._record(b"")
        if self._path() == "/v1/models":
            models = [
                {"id": m, "object": "model", "created": 0, "owned_by": "llm-test-server"} for m in self.owner.models
            ]
            self._send_json(200, {"object": "list", "data": models})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = self._record(raw)
        self.owner._enter()
        try:
            self._handle_post(request)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (timeout, cancellation): nothing left to answer.
            self.close_connection = True
        finally:
            self.owner._leave()

    def _handle_post(self, request: RecordedRequest) -> None:
        if request.path != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        if not isinstance(request.body, dict):
            self._send_json(400, {"error": {"message": "body is not a JSON object", "type": "invalid_request_error"}})
            return
        body: dict[str, Any] = request.body
        stream = bool(body.get("stream"))
        fault = self.owner._take_fault()
        if fault is not None:
            if fault.kind == "fail":
                error = {"error": {"message": f"injected HTTP {fault.status}", "type": "server_error", "code": None}}
                self._send_json(fault.status, error, fault.headers)
                return
            if fault.kind == "stall":
                self.owner._stopping.wait()
                self.close_connection = True
                return
            if fault.kind == "delay" and self.owner._stopping.wait(fault.seconds):
                return
            if fault.kind == "garbage":
                self._send_garbage(stream)
                return
        text = self.owner.responder(body)
        model = str(body.get("model") or "unknown")
        usage = {
            "prompt_tokens": prompt_tokens(body),
            "completion_tokens": count_words(text),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        completion_id = f"chatcmpl-test{self.owner._next_id()}"
        if stream:
            self._stream(completion_id, model, text, usage)
        else:
            self._send_json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
            )

    def _send_garbage(self, stream: bool) -> None:
        if stream:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._write_chunk(b'data: {"id": "chatcmpl-garbage", "choices": [ this is not json\n\n')
            self._write_chunk(b"")
        else:
            self._send_bytes(200, b'{"id": "chatcmpl-garbage", "choices": [ this is not json', "application/json")

    def _write_chunk(self, data: bytes) -> None:
        # An empty chunk is the chunked-encoding terminator.
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, completion_id: str, model: str, text: str, usage: dict[str, int]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        created = int(time.time())

        def event(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
            }
            payload.update(extra or {})
            self._write_chunk(f"data: {json.dumps(payload)}\n\n".encode())

        event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for piece in _STREAM_PIECE.findall(text):
            if self.owner.token_delay and self.owner._stopping.wait(self.owner.token_delay):
                return
            event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if self.owner.stream_usage:
            # Same shape as OpenAI's stream_options.include_usage: a last chunk without choices.
            event([], {"usage": usage})
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")


class LlmServer:
    """A programmable OpenAI-compatible server on 127.0.0.1, run in a background thread."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        models: tuple[str, ...] = ("gpt-4o-mini",),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.responder: Responder = responder or default_responder
        self.models = models
        # Seconds to wait before each streamed content chunk ("slow model").
        self.token_delay: float = 0.0
        # Real OpenAI only sends usage when asked (stream_options); MetaGPT never asks, so default on.
        self.stream_usage: bool = True
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._ids = 0
        self._in_flight = 0
        # The most requests answered at the same time since the last clear_requests().
        self.max_in_flight = 0
        self._stopping = threading.Event()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> LlmServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HttpServer(self, (self._host, self._port))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="llm-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        # Release stalled and delayed handlers first so nothing is left writing to a closed server.
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LlmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("LlmServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """What to pass as an OpenAI ``base_url`` (it includes ``/v1``)."""
        return f"http://{self._host}:{self.port}/v1"

    # behaviour

    def fail(
        self,
        times: int | None = 1,
        *,
        status: int = 500,
        retry_after_ms: int | None = 1,
        should_retry: bool | None = None,
    ) -> None:
        """Answer the next ``times`` chat requests (None: all) with an HTTP error.

        ``retry_after_ms`` is the ``retry-after-ms`` header the openai SDK obeys between its own
        retries: 1 ms keeps the SDK's real retry loop but makes it fast. ``should_retry`` sets
        ``x-should-retry``, which turns the SDK's retries off (False) or forces them (True).
        """
        headers: dict[str, str] = {}
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        if should_retry is not None:
            headers["x-should-retry"] = "true" if should_retry else "false"
        self._add_fault(_Fault("fail", times, status=status, headers=headers))

    def stall(self, times: int | None = 1) -> None:
        """Accept the next ``times`` chat requests (None: all) and never answer them."""
        self._add_fault(_Fault("stall", times))

    def delay(self, seconds: float, times: int | None = 1) -> None:
        """Answer the next ``times`` chat requests (None: all) normally, but only after ``seconds``."""
        self._add_fault(_Fault("delay", times, seconds=seconds))

    def garbage(self, times: int | None = 1) -> None:
        """Answer the next ``times`` chat requests (None: all) with HTTP 200 and a malformed body."""
        self._add_fault(_Fault("garbage", times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            raise ValueError("times must be at least 1, or None for always")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.pop(0)
            return fault

    # recording

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def in_flight(self) -> int:
        """Requests being answered right now (a streamed answer to a dead client ends at its next chunk)."""
        with self._lock:
            return self._in_flight

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received (any path), in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/chat/completions"]

    @property
    def chat_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of every chat completion request received, in order."""
        return [r.body for r in self.chat_requests if isinstance(r.body, dict)]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self.max_in_flight = self._in_flight


def _llm_server() -> Iterator[LlmServer]:
    with LlmServer() as server:
        yield server


# Import this into a conftest.py (``from tests.llm_server import llm_server_fixture``) to get an
# ``llm_server`` fixture; the distinct attribute name keeps ruff's F811 quiet in test modules.
llm_server_fixture = pytest.fixture(name="llm_server")(_llm_server)
