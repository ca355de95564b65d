"""The yardsticks the ingest benchmarks measure edgegw against: the same stack with nothing of
edgegw's work behind it. Run as its own process, `python bench/bare_responders.py http PORT` or
`... smpp PORT`, on the same cores and in the same minutes as the gateway.

- http: trio + h11 on a keep-alive connection; each request's head and body parsed by h11, the
  body decoded with edgegw's Puzzel codec, and the same response (one status per message, the
  same headers, encoded by edgegw's codec) sent back; no store, no validation, no submit.
- smpp: trio; bind_transceiver answered, every submit_sm decoded with edgegw's SMPP codec and
  answered with a submit_sm_resp, each read's answers in one write; no store.
"""

from __future__ import annotations

import email.utils
import functools
import itertools
import sys
import time

import h11
import trio

from edgegw.http.puzzel import ResponseFormat, decode_json, encode_response
from edgegw.model import STATUS_ENQUEUED, MessageStatus, SendResponse, StatusCode
from edgegw.smpp.pdu import (
    BindTransceiver,
    BindTransceiverResp,
    NeedData,
    SmppDecoder,
    SubmitSm,
    SubmitSmResp,
    encode,
)

_ids = itertools.count(1)


async def serve_http_connection(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    chunks: list[bytes] = []
    async with stream:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(bytes(data))
                if not data:
                    return
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                request = decode_json(b"".join(chunks))
                chunks.clear()
                response = SendResponse(
                    batchReference=request.batchReference or "bare",
                    messageStatus=[
                        MessageStatus(
                            statusCode=StatusCode.OK,
                            statusMessage=STATUS_ENQUEUED,
                            clientReference=message.clientReference,
                            recipient=message.recipient,
                            messageId=f"{next(_ids):016x}",
                            sessionId=None,
                            sequenceIndex=index,
                        )
                        for index, message in enumerate(request.message, 1)
                    ],
                )
                body = encode_response(response, ResponseFormat.JSON)
                date = email.utils.formatdate(time.time(), usegmt=True)
                headers = [
                    ("content-type", "application/json"),
                    ("content-length", str(len(body))),
                    ("date", date),
                    ("server", "edgegw"),
                ]
                data = conn.send(h11.Response(status_code=200, headers=headers)) or b""
                data += conn.send(h11.Data(data=body)) or b""
                data += conn.send(h11.EndOfMessage()) or b""
                await stream.send_all(data)
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return


async def serve_smpp_connection(stream: trio.SocketStream) -> None:
    decoder = SmppDecoder()
    async with stream:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            decoder.receive_data(data)
            answers: list[bytes] = []
            while not isinstance(pdu := decoder.next_pdu(), NeedData):
                if isinstance(pdu, SubmitSm):
                    resp = SubmitSmResp(
                        sequence_number=pdu.sequence_number, message_id=f"{next(_ids):016x}"
                    )
                    answers.append(encode(resp))
                elif isinstance(pdu, BindTransceiver):
                    bound = BindTransceiverResp(
                        sequence_number=pdu.sequence_number, system_id="edgegw"
                    )
                    answers.append(encode(bound))
            if answers:
                await stream.send_all(b"".join(answers))


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    handler = {"http": serve_http_connection, "smpp": serve_smpp_connection}[kind]
    trio.run(functools.partial(trio.serve_tcp, handler, port, host="127.0.0.1"))


if __name__ == "__main__":
    main()
