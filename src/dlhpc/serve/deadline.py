"""Slow clients time out: uvicorn's HTTP/1.1 protocol with a deadline for reading each request.

    uvicorn.Config(app, http=deadline_protocol(read_timeout_s=10.0, max_head_bytes=65536))

What uvicorn 0.54 (httptools) bounds, and what it does not: ``timeout_keep_alive`` closes a
connection that stays idle *after* a response, but its timer is cancelled by the first byte that
arrives and re-armed only when the next response is complete. So a client that opens a
connection and sends nothing, or sends a request's headers or body a byte at a time (slowloris),
holds a connection — and a slot of ``limit_concurrency`` — forever. httptools also buffers headers
of any size (``h11_max_incomplete_event_size`` applies to the h11 protocol only). An ASGI
middleware cannot help with the headers: the app is called only once they are complete.

This subclass adds, per connection:

- a deadline: a request must arrive whole (request line, headers, body) within
  ``read_timeout_s`` of its first byte, and a new connection must start one within
  ``read_timeout_s`` of opening. Past it the client gets ``408`` and the connection closes;
  a connection that never sent a byte is closed silently. Waiting on the *server* (the app
  computing an answer, a pipelined request queued behind it) does not count;
- a limit on the request line + headers: over ``max_head_bytes`` → ``431``, connection closed.

A request whose body is abandoned mid-way is cut off for the app too: its ``receive()`` returns
``http.disconnect`` and whatever it still sends is dropped.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class DeadlineProtocol(HttpToolsProtocol):
    """httptools' protocol, plus a read deadline per request and a limit on header bytes."""

    read_timeout_s: float = 10.0
    max_head_bytes: int = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._receiving = False  # between a request's first byte and its last
        self._in_head = False  # between its first byte and the end of its headers
        self._head_bytes = 0

    # -- the deadline

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout_s, self._on_deadline)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _busy(self) -> bool:
        """The app is answering a request (so the client may rightly wait, not send)."""
        return self.cycle is not None and not self.cycle.response_complete

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.pipeline or (self._busy() and (self._in_head or not self._receiving)):
            self._arm()  # we wait on the server here, not on the client: look again later
        elif self._receiving:
            self._refuse(408, f"the request did not arrive within {self.read_timeout_s:g} s")
        else:
            self.transport.close()  # opened, and never sent a byte of a request

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` unless a response is already on its way; then close."""
        cycle = self.cycle
        answering = cycle is not None and cycle.response_started and not cycle.response_complete
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() → http.disconnect; sends dropped
            cycle.message_event.set()
        if not answering:
            body = json.dumps({"error": message}).encode()
            head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
            head += [
                name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
            ]
            head.append(
                b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                % len(body)
            )
            self.transport.write(b"".join(head) + body)
        self._disarm()
        self.transport.close()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        was_in_head = self._in_head
        super().data_received(data)  # the parser callbacks below run in here
        if self.transport.is_closing():
            self._disarm()
            return
        if self._in_head:
            # Bytes that arrived while the head is incomplete belong to it (when the head began
            # in this chunk, the chunk may also end a previous body: counted too, conservatively).
            self._head_bytes = self._head_bytes + len(data) if was_in_head else len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, f"request line and headers over {self.max_head_bytes} bytes")
                return
        if not self._busy():
            self._arm()  # stray bytes between requests (a bare CRLF) start the clock too

    # -- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._receiving = self._in_head = True
        self._head_bytes = 0
        self._disarm()  # each request gets its whole time from its first byte
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._receiving = False
        self._disarm()


def deadline_protocol(read_timeout_s: float, max_head_bytes: int) -> type[DeadlineProtocol]:
    """A protocol class for ``uvicorn.Config(http=…)`` with these limits."""

    class Limited(DeadlineProtocol):
        pass

    Limited.read_timeout_s = read_timeout_s
    Limited.max_head_bytes = max_head_bytes
    return Limited
