"""A TCP relay that reaches a local server from another loopback address.

Chromium cannot choose the source address of its connections, and on Linux a connection to any
127.x.y.z address leaves from 127.0.0.1. The relay listens on 127.0.0.1 and opens each upstream
connection from `source` (any address of 127.0.0.0/8 is loopback), so a page loaded through it
reaches the server as a client at `source`: a second machine, as far as `request.client.host` can
tell. Bytes pass through unchanged (HTTP, the socket.io WebSocket), so the Host and Origin headers
stay 127.0.0.1 ones the server accepts.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class LoopbackRelay:
    def __init__(self, upstream_port: int, source: str) -> None:
        self.upstream_port = upstream_port
        self.source = source
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, name="relay-accept", daemon=True)

    def __enter__(self) -> LoopbackRelay:
        self._accepting.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        # shutdown() before close(): on Linux only that wakes a thread blocked in accept() or recv().
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._accepting.join(timeout=10)

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:  # the listener was closed: the relay is done
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), source_address=(self.source, 0))
            except OSError:
                downstream.close()
                continue
            with self._lock:
                self._sockets += [downstream, upstream]
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=_pipe, args=(src, dst), name="relay-pipe", daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy until either side closes, then half-close the other side."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)
