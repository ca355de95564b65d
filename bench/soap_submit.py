"""Benchmark: durable SOAP submits per second against REST single submits in the same run.

Starts `edgegw serve` as its own process on a scratch store, sends single-message requests over
keep-alive connections on 127.0.0.1, first as REST JSON (bench/http_submit.py's load), then as
SOAP envelopes to /gw/ws/SMSGatewayV10, and prints both rates, their ratio, p50/p99 and the
gateway's CPU per message; every acknowledged message is checked in the store. Target: SOAP at
least 0.8x the REST single-message rate.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from gateway_process import check_stored, cpu_seconds, free_port, wait_ready
from http_submit import CONFIG, load, read_response, report, shares

ROOT = Path(__file__).resolve().parent.parent

ENVELOPE = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns:sms="http://chimera.intele.com/gw/wsdl/SMSGateway-v1.0"'
    ' xmlns:ns="http://chimera.intele.com/gw/xsd/SMSGateway/Request/2013/02">'
    "<soapenv:Body><sms:sendMessages><ns:request>"
    "<serviceId>1000</serviceId><username>bench</username><password>bench</password>"
    "<message><recipient>+47{number}</recipient><content>Bench</content></message>"
    "</ns:request></sms:sendMessages></soapenv:Body></soapenv:Envelope>"
)


def soap_request(port: int, index: int) -> bytes:
    body = ENVELOPE.format(number=41000000 + index % 1000000).encode()
    head = (
        f"POST /gw/ws/SMSGatewayV10 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        'Content-Type: text/xml; charset=utf-8\r\nSOAPAction: ""\r\n'
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def load_soap(port: int, connections: int, requests: int) -> tuple[float, list[float]]:
    """Send `requests` single-message envelopes over `connections`; (seconds, latencies)."""
    latencies: list[float] = []
    prepared = shares(requests, connections)

    async def client(index: int) -> None:
        payloads = [soap_request(port, number) for number in prepared[index]]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        buffer = bytearray()
        async with stream:
            for payload in payloads:
                started = time.perf_counter()
                await stream.send_all(payload)
                body = await read_response(stream, buffer)
                latencies.append(time.perf_counter() - started)
                if b"<statusCode>1</statusCode>" not in body:
                    raise RuntimeError(f"rejected: {body[:300]!r}")

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(connections):
            nursery.start_soon(client, index)
    return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10000, help="requests of each kind")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        config = Path(scratch) / "bench.toml"
        config.write_text(CONFIG.format(port=port, log_level="warning"))
        process = subprocess.Popen(
            [sys.executable, "-m", "edgegw", "serve", "--config", str(config)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            wait_ready(port, process)
            cpu = cpu_seconds(process.pid)
            rest_seconds, rest = trio.run(load, port, args.connections, args.requests, 1)
            used = cpu_seconds(process.pid) - cpu
            report(f"REST single x{args.connections} conns", rest_seconds, rest, len(rest), used)
            cpu = cpu_seconds(process.pid)
            soap_seconds, soap = trio.run(load_soap, port, args.connections, args.requests)
            used = cpu_seconds(process.pid) - cpu
            report(f"SOAP single x{args.connections} conns", soap_seconds, soap, len(soap), used)
        finally:
            process.terminate()
            process.wait(timeout=30)
        ratio = (len(soap) / soap_seconds) / (len(rest) / rest_seconds)
        print(f"SOAP / REST single rate: {ratio:.2f} (target 0.80)")
        accepted = len(rest) + len(soap)
        check_stored(Path(scratch) / "bench.db", accepted)


if __name__ == "__main__":
    main()
