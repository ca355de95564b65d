"""Delivery of MO and DR callbacks to the customer: the wire shapes and the durable outbox.

The delivery workers live in `edgegw.delivery.worker` and the notification step the store runs
on a final outcome in `edgegw.delivery.fanout` (both imported by the gateway, not here).
README, Design rules (the flow); spec sections 3 and 4.
"""

from edgegw.delivery.outbox import (
    Endpoint,
    ItemState,
    OutboxItem,
    due_items,
    enqueue_drs,
    enqueue_mo,
    next_due,
    outbox_items,
    record_delivered,
    record_failure,
    register_endpoints,
)
from edgegw.delivery.payload import (
    SIGNATURE_HEADER,
    CallbackKind,
    DrReport,
    MoReport,
    encode_json_batch,
    encode_xml_batch,
    placeholders,
    render_template,
    sign,
)

__all__ = [
    "SIGNATURE_HEADER",
    "CallbackKind",
    "DrReport",
    "Endpoint",
    "ItemState",
    "MoReport",
    "OutboxItem",
    "due_items",
    "encode_json_batch",
    "encode_xml_batch",
    "enqueue_drs",
    "enqueue_mo",
    "next_due",
    "outbox_items",
    "placeholders",
    "record_delivered",
    "record_failure",
    "register_endpoints",
    "render_template",
    "sign",
]
