"""A TCP proxy that can cut one process off from a server that stays up.

``kill``/``start`` of a Redis server changes its run id, and the Redis store then starts a new
epoch (every entry misses): a restart hides what a lost bump would do. A network partition does
not: the server keeps its entries and run id while this process cannot reach it. The proxy plays
the partition::

    with Proxy(server.port) as proxy:     # store URL: redis://127.0.0.1:{proxy.port}/0
        proxy.cut()                       # refused, and open connections reset
        proxy.heal()                      # reachable again: same server, same data
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

from tests.helpers import free_port

__all__ = ["Proxy"]


class Proxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream``, one thread pair per connection."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def heal(self) -> None:
        assert self._listener is None, "already forwarding"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def cut(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
            sock.close()
        with self._lock:
            conns, self._open = self._open, set()
        for conn in conns:
            _close(conn)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(server)
                    return
                self._open |= {client, server}
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)

    def __enter__(self) -> Proxy:
        self.heal()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cut()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
