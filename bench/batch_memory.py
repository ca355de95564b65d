"""Benchmark: the gateway's peak memory for one send batch of the largest body it takes, as JSON,
XML (without and with `charset=utf-8`) and a web form, with the right credentials, to a service that
does not exist and with a wrong password; its messages typical (a recipient and a short text) or
empty (no fields: as many messages as the body holds, a hostile client's cheapest).

Each case starts `edgegw serve` afresh on a scratch store with the default body limit (1 MiB), sends
a batch of 1100 messages of the same case first (code paths, caches and free lists warmed, the
streamed answer's included), then resets the process's peak resident set (/proc/PID/clear_refs) and
sends `--concurrent` copies of the big batch at once over as many connections. It prints the peak
RSS growth over the resident set before them, also as a multiple of the bodies' bytes, and checks
every answer's status codes (1, 4 or 2 throughout; 5 for empty messages with the right credentials)
and that the store holds every accepted message.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape

import httpx
import trio
from gateway_process import BASE_CONFIG, check_stored, free_port, start, wait_ready

from edgegw.http.limits import HttpLimits
from edgegw.http.puzzel import MAX_INDEX, REQUEST_NAMESPACE

ROOT = Path(__file__).resolve().parent.parent


MAX_BODY = HttpLimits().max_body_bytes  # the default, which BASE_CONFIG keeps
MAX_FORM_MESSAGES = MAX_INDEX + 1  # message[0] to message[MAX_INDEX]

# (serviceId, password, the status every message is answered with)
CREDENTIALS: dict[str, tuple[int, str, int]] = {
    "right credentials": (1000, "bench", 1),
    "unknown service": (9999, "bench", 4),
    "wrong password": (1000, "guess", 2),
}


def _fill(opening: str, closing: str, message: Callable[[int], str], most: int) -> bytes:
    """The opening, as many messages as fit the body limit (at most `most`), the closing."""
    pieces = [opening]
    size = len(opening.encode()) + len(closing.encode())
    for index in range(most):
        piece = message(index)
        length = len(piece.encode())
        if size + length > MAX_BODY:
            break
        pieces.append(piece)
        size += length
    pieces.append(closing)
    return "".join(pieces).encode()


def _recipient(index: int) -> str:
    return f"+47{41000000 + index}"


# A message of each format: with a recipient and `content`, or with no fields at all when
# `content` is None (as many messages as a body can hold; each is answered status 5).
def json_body(service: int, password: str, content: str | None, most: int) -> bytes:
    opening = f'{{"serviceId":{service},"username":"bench","password":"{password}","message":['

    def message(index: int) -> str:
        comma = "," if index else ""
        if content is None:
            return comma + "{}"
        return f'{comma}{{"recipient":"{_recipient(index)}","content":"{content}"}}'

    return _fill(opening, "]}", message, most)


def xml_body(service: int, password: str, content: str | None, most: int) -> bytes:
    opening = (
        f'<req:request xmlns:req="{REQUEST_NAMESPACE}"><serviceId>{service}</serviceId>'
        f"<username>bench</username><password>{password}</password>"
    )

    def message(index: int) -> str:
        if content is None:
            return "<message/>"
        return (
            f"<message><recipient>{_recipient(index)}</recipient>"
            f"<content>{escape(content)}</content></message>"
        )

    return _fill(opening, "</req:request>", message, most)


def form_body(service: int, password: str, content: str | None, most: int) -> bytes:
    opening = f"serviceId={service}&username=bench&password={password}"

    def message(index: int) -> str:
        key = f"message%5B{index}%5D"
        if content is None:
            return f"&{key}.content="  # a form has no message without a field
        return f"&{key}.recipient={quote(_recipient(index))}&{key}.content={quote(content)}"

    return _fill(opening, "", message, min(most, MAX_FORM_MESSAGES))


FORMATS: dict[str, tuple[str, Callable[[int, str, str | None, int], bytes]]] = {
    "json": ("application/json", json_body),
    "xml": ("application/xml", xml_body),
    # The charset declared, as many clients do: the body is then read in it, a piece at a time.
    "xml-charset": ("application/xml; charset=utf-8", xml_body),
    "form": ("application/x-www-form-urlencoded", form_body),
}


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak since the last reset) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


async def send_all(port: int, media_type: str, body: bytes, copies: int) -> list[list[int]]:
    """Post `copies` of the body at once, each on its own connection; each answer's codes."""
    answers: list[list[int]] = []

    async def post() -> None:
        async with httpx.AsyncClient(timeout=120) as client:
            response = await client.post(
                f"http://127.0.0.1:{port}/gw/rs/sendMessages",
                content=body,
                headers={"Content-Type": media_type, "Accept": "application/json"},
            )
        response.raise_for_status()
        answers.append([status["statusCode"] for status in response.json()["messageStatus"]])

    async with trio.open_nursery() as nursery:
        for _ in range(copies):
            nursery.start_soon(post)
    return answers


def measure(fmt: str, case: str, content: str | None, copies: int) -> tuple[int, int, float, float]:
    """One case on a fresh gateway: (body bytes, messages, peak growth in bytes, seconds)."""
    media_type, build = FORMATS[fmt]
    service, password, expected = CREDENTIALS[case]
    if content is None and expected == 1:
        expected = 5  # accepted credentials, but no recipient
    body = build(service, password, content, 1_000_000)
    # More than STREAMED_MORE_THAN messages, so the streamed answer's path is warmed too.
    warm_up = build(service, password, content, 1100)
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        config = Path(scratch) / "bench.toml"
        config.write_text(BASE_CONFIG.format(port=port, log_level="error"))
        process = start(["-m", "edgegw", "serve", "--config", str(config)], ROOT)
        try:
            wait_ready(port, process)
            (warm_codes,) = trio.run(send_all, port, media_type, warm_up, 1)
            time.sleep(0.2)
            before = memory_kib(process.pid)["VmRSS"]
            Path(f"/proc/{process.pid}/clear_refs").write_text("5")
            started = time.perf_counter()
            answers = trio.run(send_all, port, media_type, body, copies)
            seconds = time.perf_counter() - started
            peak = memory_kib(process.pid)["VmHWM"]
        finally:
            process.terminate()
            process.wait(timeout=30)
        messages = len(answers[0])
        for codes in answers:
            if len(codes) != messages or set(codes) != {expected}:
                raise SystemExit(f"{fmt} {case}: answered {sorted(set(codes))}, not {expected}")
        if expected == 1:
            check_stored(Path(scratch) / "bench.db", messages * copies + len(warm_codes))
    return len(body), messages, (peak - before) * 1024.0, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--formats", nargs="+", choices=sorted(FORMATS), default=list(FORMATS))
    parser.add_argument(
        "--cases", nargs="+", choices=sorted(CREDENTIALS), default=list(CREDENTIALS)
    )
    parser.add_argument("--content", default="Bench message", help="every message's text")
    parser.add_argument(
        "--shapes",
        nargs="+",
        choices=["typical", "empty"],
        default=["typical", "empty"],
        help="messages with a recipient and the content, or with no fields",
    )
    parser.add_argument("--concurrent", type=int, default=1, help="copies sent at once")
    parser.add_argument("--runs", type=int, default=3, help="fresh gateways a case")
    args = parser.parse_args()

    for shape, fmt, case in itertools.product(args.shapes, args.formats, args.cases):
        content = args.content if shape == "typical" else None
        growths, times = [], []
        for _ in range(args.runs):
            size, messages, growth, seconds = measure(fmt, case, content, args.concurrent)
            growths.append(growth)
            times.append(seconds)
        factors = ", ".join(f"{growth / (size * args.concurrent):.1f}" for growth in growths)
        print(
            f"{shape} {fmt}, {case}: {args.concurrent} x {size:,} bytes, {messages:,} messages: "
            f"peak RSS +{statistics.median(growths) / 1e6:.1f} MB (median of {args.runs}), "
            f"{factors} times the bodies; answered in {statistics.median(times):.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
