"""The bounds of the HTTP listener, as the configuration holds them (`[http.limits]`).

Pure data, apart from the listener (`edgegw.http.server`), so that the configuration does not
import an I/O shell.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


class HttpLimits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Bounds of the HTTP listener; the gateway configuration embeds this as `[http.limits]`."""

    # Request line plus headers; past it the client gets 431 and the connection closes.
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 16384
    # Request body; a larger declared or streamed body gets 413 and is not read further.
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1)] = 1024 * 1024
    # Seconds from a request's first byte until its headers are complete (slowloris guard), and
    # for a new connection to send anything at all; 408 when partial headers run out of time.
    header_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    # Seconds from the end of the headers until the whole body is in (408 past it), and the
    # longest a response may take to write to a client that does not read.
    body_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # Seconds an idle keep-alive connection is held open between requests; it closes quietly.
    keep_alive_timeout: Annotated[float, msgspec.Meta(gt=0)] = 75.0
    # Connections served at once; one more is answered 503 with `Retry-After` and closed, so a
    # flood is told to back off at once instead of piling up unseen in the accept queue.
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 512
    # Connections from one client address at once; 0 means a quarter of max_connections. One
    # more is answered 503 like a full listener, so one address cannot starve the others.
    max_connections_per_address: Annotated[int, msgspec.Meta(ge=0)] = 0
    # true: loopback clients (a reverse proxy on the box) are not held to that share.
    exempt_loopback: bool = False
    # Seconds requests in progress get to finish once shutdown starts; idle connections close
    # at once, and whatever still runs at the end of the grace is cancelled.
    shutdown_grace: Annotated[float, msgspec.Meta(ge=0)] = 5.0
