"""The client end of a line to the simulated modem, as a terminal program holds it: writes bytes
and reads up to an expected marker (TS 27.005/27.007 framing is the test's business)."""

from __future__ import annotations

import trio


class StreamTerminal:
    """Writes to the stream and reads what the modem writes up to a marker, or raises EOFError
    with what came before the line closed."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = await self.stream.receive_some()
            if not chunk:
                raise EOFError(bytes(self.buffer))
            self.buffer += chunk
        end = self.buffer.index(marker) + len(marker)
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data
