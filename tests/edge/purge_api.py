"""A local HTTP server implementing Fastly's and Cloudflare's documented purge endpoints, for the
purger tests: each official SDK's base URL is pointed at it.

* Fastly, "Purge multiple surrogate key tags": ``POST /service/{service_id}/purge``, the token in
  ``Fastly-Key``, the keys in a JSON body ``{"surrogate_keys": [...]}`` (or a ``Surrogate-Key``
  header), at most 256 of them; answers ``{key: purge_id}``.
* Cloudflare, "Purge Cached Content": ``POST /client/v4/zones/{zone_id}/purge_cache``, the token
  in ``Authorization: Bearer``, ``{"tags": [...]}`` of at most 100; answers the API's envelope
  (``success``, ``errors``, ``messages``, ``result``).

A request over the limit is refused with 400, as the APIs do. ``script`` holds answers to give
first (a 429 with ``Retry-After``, a 503); ``hold`` makes each purge wait before answering (a
worker can be killed while its request is in flight). Every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FASTLY_LIMIT = 256
CLOUDFLARE_LIMIT = 100
TOKEN = "test-token"


@dataclass
class Received:
    vendor: str
    keys: list[str]
    status: int
    at: float = field(default_factory=time.monotonic)


class PurgeAPI:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.hold = 0.0
        self.lock = threading.Lock()
        self.arrived = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.handle(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PurgeAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        parts = request.path.strip("/").split("/")
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = {}
        if len(parts) == 3 and parts[0] == "service" and parts[2] == "purge":
            vendor, limit = "fastly", FASTLY_LIMIT
            authorized = request.headers.get("Fastly-Key") == TOKEN
            keys = data.get("surrogate_keys") or request.headers.get("Surrogate-Key", "").split()
        elif parts[:3] == ["client", "v4", "zones"] and parts[4:] == ["purge_cache"]:
            vendor, limit = "cloudflare", CLOUDFLARE_LIMIT
            authorized = request.headers.get("Authorization") == f"Bearer {TOKEN}"
            keys = data.get("tags") or []
        else:
            self.answer(request, 404, {"msg": "not found"})
            return
        self.arrived.set()
        if self.hold:
            time.sleep(self.hold)
        with self.lock:
            scripted = self.script.pop(0) if self.script else None
        status, headers = scripted or (200, {})
        if not authorized:
            status = 401
        elif not keys or len(keys) > limit:
            status = 400
        with self.lock:
            self.requests.append(Received(vendor, list(keys), status))
        if vendor == "fastly":
            payload: Any = ({k: uuid.uuid4().hex for k in keys} if status == 200
                            else {"msg": "error", "detail": f"status {status}"})  # fmt: skip
        else:
            payload = {"success": status == 200, "messages": [],
                       "errors": [] if status == 200 else [{"code": status, "message": "no"}],
                       "result": {"id": uuid.uuid4().hex} if status == 200 else None}  # fmt: skip
        self.answer(request, status, payload, headers)

    @staticmethod
    def answer(request: BaseHTTPRequestHandler, status: int, payload: Any,
               headers: dict[str, str] | None = None) -> None:  # fmt: skip
        data = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def purged(self, vendor: str | None = None) -> list[str]:
        """Every key of every request that succeeded, in order (a key twice: sent twice)."""
        with self.lock:
            return [k for r in self.requests if r.status == 200
                    and (vendor is None or r.vendor == vendor) for k in r.keys]  # fmt: skip
