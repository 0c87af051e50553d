"""A small OpenAI-compatible server on loopback that plays an inference engine in tests.

It answers `GET /v1/models` and `POST /v1/chat/completions` (plain JSON, or SSE when the body has
`"stream": true`), puts a `reasoning_content` field in its messages and deltas the way vLLM and
SGLang do with a reasoning parser, and records every request it gets so a test can assert which
upstream served a call. Stdlib only; one thread per connection.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REASONING_PARTS = ("Thinking", " about", " it.")
GATE_TIMEOUT = "[gate timed out: the client had not seen the first chunks]"
CONTENT_PARTS = ("Hello", " from", " upstream")


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict | None


@dataclass
class Upstream:
    """One fake engine. `name` appears in every answer so a test can tell upstreams apart."""

    name: str
    served_model: str
    chunk_delay_seconds: float = 0.05
    # "ok" answers; "unavailable" answers 503 like an engine still loading; "hang" waits
    # hang_seconds before answering, like an overloaded engine.
    mode: str = "ok"
    hang_seconds: float = 5.0
    # streaming: after the role and reasoning chunks, wait for this event before sending the rest; a
    # proxy that buffers the answer never lets the client see those chunks, so the wait times out and
    # the upstream sends GATE_TIMEOUT as content (a test asserts on order, not on wall-clock time)
    gate: threading.Event | None = None
    gate_timeout_seconds: float = 10.0
    requests: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        assert self._server is not None, "upstream not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def chat_requests(self) -> list[Seen]:
        """Chat requests seen so far, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def start(self) -> Upstream:
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"upstream-{self.name}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection, like a Service whose pods are
        gone: kept-alive connections die and new ones are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *args, **kwargs) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


def _handler_for(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output quiet

        def _body(self) -> dict | None:
            length = int(self.headers.get("Content-Length") or 0)
            if length == 0:
                return None
            return json.loads(self.rfile.read(length))

        def _send_json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            upstream._record(Seen("GET", self.path, _lower(self.headers), None))
            if self.path.rstrip("/").endswith("/models"):
                self._send_json(200, {
                    "object": "list",
                    "data": [{"id": upstream.served_model, "object": "model", "owned_by": upstream.name}],
                })
            else:
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            body = self._body()
            upstream._record(Seen("POST", self.path, _lower(self.headers), body))
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = body or {}
            try:
                if upstream.mode == "unavailable":
                    self._send_json(503, {"error": {"message": f"{upstream.name} is loading"}})
                    return
                if upstream.mode == "hang":
                    time.sleep(upstream.hang_seconds)
                if body.get("stream"):
                    self._stream(body)
                else:
                    self._send_json(200, _completion(upstream, body))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client (the proxy) gave up on us: expected in timeout cases

        def _stream(self, body: dict) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            chunks = _chunks(upstream, body)
            for i, chunk in enumerate(chunks):
                if upstream.gate is not None and i == 1 + len(REASONING_PARTS):
                    if not upstream.gate.wait(upstream.gate_timeout_seconds):
                        chunk = {**chunk, "choices": [{"index": 0, "delta": {"content": GATE_TIMEOUT},
                                                       "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                time.sleep(upstream.chunk_delay_seconds)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler


def _lower(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _completion(upstream: Upstream, body: dict) -> dict:
    return {
        "id": f"chatcmpl-{upstream.name}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": upstream.served_model,
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": f"{''.join(CONTENT_PARTS)} {upstream.name}",
                "reasoning_content": "".join(REASONING_PARTS),
            },
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def _chunks(upstream: Upstream, body: dict) -> list[dict]:
    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {
            "id": f"chatcmpl-{upstream.name}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": upstream.served_model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"reasoning_content": part}) for part in REASONING_PARTS]
    out += [chunk({"content": part}) for part in (*CONTENT_PARTS, f" {upstream.name}")]
    last = chunk({}, "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        last["usage"] = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    out.append(last)
    return out
