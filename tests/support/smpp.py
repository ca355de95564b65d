"""smpplib sessions the SMPP tests share: connecting, submitting a list, a refused bind.

Blocking calls: tests run them in `trio.to_thread.run_sync`."""

from __future__ import annotations

from typing import Any

import smpplib.client
import smpplib.exceptions


def connect(port: int) -> smpplib.client.Client:
    client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    client.connect()
    return client


def submit_all(port: int, submits: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """Bind as a transmitter, send each submit_sm and read its response: (status, message id)."""
    client = connect(port)
    try:
        client.bind_transmitter(system_id="demo", password="demo")
        results = []
        for fields in submits:
            client.send_message(**fields)
            response = client.read_pdu()
            assert response.command == "submit_sm_resp"
            message_id = response.message_id.decode() if response.message_id else ""
            results.append((int(response.status), message_id))
        client.unbind()
        return results
    finally:
        client.disconnect()


def bind_status(port: int, system_id: str, password: str, *, mode: str = "transmitter") -> int:
    """The command_status a bind gets (0 when it is accepted)."""
    client = connect(port)
    try:
        getattr(client, f"bind_{mode}")(system_id=system_id, password=password)
    except smpplib.exceptions.PDUError as exc:
        return int(exc.args[1])
    finally:
        client.disconnect()
    return 0
