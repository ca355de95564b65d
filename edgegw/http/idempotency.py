"""Idempotent sends (our addition to spec 2.3/2.4 and 2.5): a send carrying an `Idempotency-Key`
header, through REST, HTTP GET or SOAP, is answered, for 24 hours, with the answer its first
attempt got, instead of creating its messages again, so a client that lost an answer can retry
safely. A trio wrapper around the `App`; the answers live in the store (`stored_response`), each
written in the same job as the messages it reports (`Request.commit_with`), so a crash keeps
both or neither.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from edgegw.clock import Clock
from edgegw.http import soap_routes
from edgegw.http.app import SEND_PATH
from edgegw.http.problems import problem_response
from edgegw.http.server import App, Request, Response
from edgegw.store import Store, StoredResponse, Write, response_rememberer, stored_response

__all__ = ["IDEMPOTENCY_HEADER", "KEEP_SECONDS", "idempotent_sends"]

IDEMPOTENCY_HEADER: Final = "idempotency-key"
REPLAYED_HEADER: Final = "idempotent-replayed"
KEEP_SECONDS: Final = 24 * 3600.0
# Visible ASCII, 1 to 255 characters: a UUID, a hash, a client's own counter.
_KEY: Final = re.compile(r"[\x21-\x7e]{1,255}")


def fingerprint(request: Request) -> bytes:
    """What makes two attempts the same send: method, query, body type and body (which hold the
    credentials, so only the same service's same request is answered from memory)."""
    digest = hashlib.sha256()
    for part in (
        request.method,
        request.query,
        request.headers.get("content-type", ""),
        request.headers.get("accept", ""),
    ):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(request.body)
    return digest.digest()


def _is_send(request: Request) -> bool:
    """A REST send (POST or GET) or a call to the SOAP send service (whose GETs are its WSDL)."""
    if request.path in soap_routes.SEND_PATHS:
        return request.method == "POST"
    return request.path == SEND_PATH and request.method in ("GET", "POST")


def _refusal(request: Request, status: int, detail: str) -> Response:
    """problem+json, or for a SOAP call a SOAP Fault with the same status, which its client
    can read."""
    if request.path in soap_routes.SEND_PATHS:
        return soap_routes.refusal_fault(status, detail)
    return problem_response(status, detail)


def idempotent_sends(app: App, store: Store, clock: Clock) -> App:
    """`app`, with sends that carry an Idempotency-Key answered once. A second attempt with the
    same key while the first is still running gets 409; the same key with another request gets
    422; a key that is not 1-255 visible ASCII characters gets 400. Only a 200 is remembered:
    anything else changed nothing and may simply be tried again. The answer is committed by the
    send itself, in the write job of its messages; a send that writes nothing (its credentials
    refused) leaves nothing remembered."""
    in_progress: set[str] = set()

    async def idempotent(request: Request) -> Response:
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None or not _is_send(request):
            return await app(request)
        if _KEY.fullmatch(key) is None:
            return _refusal(
                request,
                400,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        if key in in_progress:
            response = _refusal(
                request, 409, "a send with this Idempotency-Key is still in progress"
            )
            response.headers.append(("retry-after", "1"))
            return response
        in_progress.add(key)
        try:
            return await _once(request, key)
        finally:
            in_progress.discard(key)

    async def _once(request: Request, key: str) -> Response:
        now = clock.now()
        request_print = fingerprint(request)
        earlier = await stored_response(store, key, now - KEEP_SECONDS)
        if earlier is not None:
            if earlier.fingerprint != request_print:
                return _refusal(
                    request,
                    422,
                    "Idempotency-Key already used for another send",
                )
            return Response(
                status=earlier.status,
                headers=[("content-type", earlier.content_type), (REPLAYED_HEADER, "true")],
                body=earlier.body,
            )

        def remember(response: Response) -> Write | None:
            if response.status != 200 or response.auth_failure is not None:
                return None
            content_type = next(
                (value for name, value in response.headers if name.lower() == "content-type"), ""
            )
            answer = StoredResponse(
                fingerprint=request_print,
                status=response.status,
                content_type=content_type,
                body=response.body,
                created_at=now,
            )
            return response_rememberer(key, answer, forget_before=now - KEEP_SECONDS)

        request.commit_with = remember
        return await app(request)

    return idempotent
