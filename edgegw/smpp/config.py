"""The SMPP listener's configuration, which the gateway configuration embeds as `[smpp]`.

Typed data only (msgspec Structs, unknown keys refused); no I/O. Bounds follow SMPP 3.4 section 4.1
(system_id up to 15 octets, password up to 8) and section 7.2 (timers).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["SmppAccount", "SmppConfig"]


class SmppAccount(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An ESME login: bind credentials mapped to the service its messages belong to."""

    # bind system_id; SMPP 3.4 4.1.1 allows 15 octets.
    system_id: Annotated[str, msgspec.Meta(min_length=1, max_length=15)]
    # bind password; SMPP 3.4 4.1.1 allows 8 octets. Or its scrypt hash (edgegw.passwords),
    # which is longer: the gateway's config check holds a plaintext one to 8.
    password: Annotated[str, msgspec.Meta(max_length=256)]
    # The gateway service (serviceId) that owns submits, receipts and MO of this account.
    service: int
    # Sessions of this account bound at once; one more bind gets ESME_RBINDFAIL.
    max_binds: Annotated[int, msgspec.Meta(ge=1)] = 4


class SmppConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The SMPP 3.4 listener (ESMEs bind to edgegw as to an SMSC)."""

    # Address to listen on; 127.0.0.1 keeps the door local until TLS or a firewall guards it.
    host: str = "127.0.0.1"
    # TCP port; 2775 is the port SMSCs conventionally use. 0 picks a free one (tests).
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 2775
    # Our system_id in bind responses.
    system_id: Annotated[str, msgspec.Meta(max_length=15)] = "edgegw"
    # Seconds without a PDU from the peer before we send enquire_link; 0 never probes.
    enquire_link_interval: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    # Seconds without any PDU from the peer before the session is dropped; 0 never drops.
    inactivity_timeout: Annotated[float, msgspec.Meta(ge=0)] = 120.0
    # Seconds our enquire_link, deliver_sm or unbind may go unanswered; an unanswered
    # deliver_sm is sent again later, an unanswered enquire_link or unbind closes the session.
    response_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    # Seconds a new connection has to bind before it is closed (SMPP session_init_timer).
    bind_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # Seconds before a deliver_sm the ESME refused or did not answer is offered again.
    redeliver_interval: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # Outstanding deliver_sm per session (the window).
    window: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64
    # Submits awaiting the store per session; one more is answered ESME_RTHROTTLED.
    max_pending_submits: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    # Largest command_length accepted; a larger one closes the session.
    max_pdu_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1_048_576)] = 65_536
    # Connections at once; more are closed as soon as they are accepted.
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 100
    # Connections from one client address at once; 0 means a quarter of max_connections. More
    # are closed at once, so one address cannot shut the others out.
    max_connections_per_address: Annotated[int, msgspec.Meta(ge=0)] = 0
    # true: loopback clients are not held to that share.
    exempt_loopback: bool = False
    # Seconds a shutdown waits for bound peers to answer our unbind before closing anyway.
    drain_timeout: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    # PEM certificate chain and key; with both set the listener speaks TLS only.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # ESME accounts.
    accounts: list[SmppAccount] = msgspec.field(default_factory=list)
