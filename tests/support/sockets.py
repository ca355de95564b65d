"""Client sockets for tests of the listeners: a connection from a chosen loopback address (the
whole 127.0.0.0/8 is local on Linux, so 127.0.0.2 is a second client address)."""

from __future__ import annotations

import socket

import trio


async def open_from(
    port: int, source: str = "127.0.0.1", *, receive_buffer: int | None = None
) -> trio.SocketStream:
    """A TCP connection to 127.0.0.1:`port` from `source`. A small `receive_buffer` makes a
    client that does not read fill the server's buffers quickly."""
    sock = trio.socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)
