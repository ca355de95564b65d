"""The MT pipeline: submit into the store, then dispatch from it to the modems.

Everything here reads and writes through `edgegw.store`; in-memory channels only wake tasks.
README, Design rules (the flow, the store is the queue).
"""

from edgegw.pipeline.dispatcher import Dispatcher
from edgegw.pipeline.router import choose_modem
from edgegw.pipeline.submit import Submitter
from edgegw.pipeline.worker import ModemWorker

__all__ = ["Dispatcher", "ModemWorker", "Submitter", "choose_modem"]
