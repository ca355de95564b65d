"""Simulated modems in a process of their own, for benchmarks that measure the gateway alone.

`python bench/simulators.py --modems 32 --send-delay 0.5 --report-delay 86400` opens one
pseudo-terminal per simulated modem (IMEI and IMSI numbered as `modem_path.py` numbers them),
prints their paths as one JSON list once all are open, and serves them until SIGTERM or SIGINT.
A gateway then drives them with `driver = "at"`, as it would USB modems: their CPU is this
process's, not the gateway's.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal

import trio

from drivers.simulator import Simulator, SimulatorOptions, serve_pty


def imei(index: int) -> str:
    """A distinct 15-digit IMEI (14 digits plus the Luhn check digit)."""
    body = f"35693803{index:06d}"
    total = 0
    for position, digit in enumerate(reversed(body)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return body + str(-total % 10)


async def serve(modems: int, send_delay: float, report_delay: float) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            paths = []
            for index in range(modems):
                options = SimulatorOptions(
                    imei=imei(index),
                    imsi=f"24201{index:010d}",
                    send_delay=send_delay,
                    report_delay=report_delay,
                )
                paths.append(await nursery.start(functools.partial(serve_pty, Simulator(options))))
            print(json.dumps(paths), flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modems", type=int, default=32)
    parser.add_argument("--send-delay", type=float, default=0.5, help="+CMGS answer delay, s")
    parser.add_argument("--report-delay", type=float, default=86400.0, help="s to each report")
    args = parser.parse_args()
    trio.run(serve, args.modems, args.send_delay, args.report_delay)


if __name__ == "__main__":
    main()
