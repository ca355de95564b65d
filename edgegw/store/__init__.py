"""The durable store: one SQLite file that is the queue of MT messages, their parts and history.

`engine` holds the connections, the schema and the group-commit writer; `transactions` the only
writes of a message's life (tables `messages`, `parts`, `message_events`), each checked against
the lifecycle of `edgegw.model`; `messages` the `Store` the pipeline uses. Import the names
below from `edgegw.store`.
"""

from edgegw.model import (
    Claim,
    ClaimedPart,
    DailyWindow,
    DrStatus,
    DueMessage,
    IllegalTransition,
    MessageRecord,
    NewMessage,
    PartSent,
    Recovery,
)
from edgegw.store.engine import (
    BUSY_TIMEOUT_MS,
    MAX_JOBS_PER_COMMIT,
    MIGRATIONS,
    SCHEMA_VERSION,
    UNWRITABLE_RETRY,
    WRITE_QUEUE_DEPTH,
    Engine,
    Offload,
    StoreClosed,
    StoreDamaged,
    StoreError,
    StoreTooNew,
    StoreUnwritable,
    connect,
    migrate,
    run_inline,
    schema_version,
    write_refused,
)
from edgegw.store.messages import DUE_SCAN_LIMIT, Store
from edgegw.store.responses import (
    AnswerSeal,
    StoredResponse,
    Write,
    batch_reference_used,
    response_rememberer,
    stored_response,
    used_client_references,
)
from edgegw.store.retention import (
    PRUNED_TABLES,
    RELEASE_PAGES,
    prune_batch,
    release_free_pages,
)
from edgegw.store.transactions import FinalOutcomes, Topic, iso, message_inserter

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DUE_SCAN_LIMIT",
    "MAX_JOBS_PER_COMMIT",
    "MIGRATIONS",
    "PRUNED_TABLES",
    "RELEASE_PAGES",
    "SCHEMA_VERSION",
    "UNWRITABLE_RETRY",
    "WRITE_QUEUE_DEPTH",
    "AnswerSeal",
    "Claim",
    "ClaimedPart",
    "DailyWindow",
    "DrStatus",
    "DueMessage",
    "Engine",
    "FinalOutcomes",
    "IllegalTransition",
    "MessageRecord",
    "NewMessage",
    "Offload",
    "PartSent",
    "Recovery",
    "Store",
    "StoreClosed",
    "StoreDamaged",
    "StoreError",
    "StoreTooNew",
    "StoreUnwritable",
    "StoredResponse",
    "Topic",
    "Write",
    "batch_reference_used",
    "connect",
    "iso",
    "message_inserter",
    "migrate",
    "prune_batch",
    "release_free_pages",
    "response_rememberer",
    "run_inline",
    "schema_version",
    "stored_response",
    "used_client_references",
    "write_refused",
]
