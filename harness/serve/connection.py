"""uvicorn's h11 protocol with the two connection deadlines uvicorn lacks.

uvicorn's keep-alive timer starts only after an answer and stops at the next byte, so a connection that never
sends a request, or sends its head a byte at a time (slowloris), is held for ever. Here an idle connection is
closed after `timeout_keep_alive` from the moment it opens too, and a request head must be complete within
`header_timeout_s` of its first byte, else 408 and closed. The body's own deadline is the app's (body_timeout_s).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class DeadlineH11(H11Protocol):
    """H11Protocol (uvicorn's `http="h11"`) with a keep-alive timer from the start and a deadline per request head."""

    header_timeout_s = 10.0
    linger_s = 2.0  # after a 408: keep reading (and dropping) what the client still sends, so closing sends no RST


    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_timer: asyncio.TimerHandle | None = None
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        if getattr(self, "timed_out", False):
            return  # answered with 408: the rest of a slow head is dropped until the connection closes
        super().data_received(data)  # the keep-alive timer stops here: a byte of the next request has come
        waiting_for_head = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting_for_head and self.head_timer is None:
            self.head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)
        elif not waiting_for_head:
            self._stop_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_too_slow(self) -> None:
        self.head_timer = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        message = f"the request head did not arrive within {self.header_timeout_s:g} s\n".encode()
        # Written raw: h11 answers only a request it has read, and this connection is closed right after.
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(message), message))
        # A close with unread bytes in the kernel's buffer is a reset that can discard the 408 before the client reads
        # it: end our side, drop what still comes, close after linger_s.
        self.timed_out = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(self.linger_s, self.transport.close)


def deadline_protocol(header_timeout_s: float) -> type[DeadlineH11]:
    """The protocol class for uvicorn.Config(http=...), with this server's head deadline."""
    return type("DeadlineH11", (DeadlineH11,), {"header_timeout_s": header_timeout_s})
