"""Every benchmark in one run, one after the other, with the machine and its load stated: HTTP
single requests and batches (with the bare trio + h11 yardstick and the /health stall probe),
SMPP submit_sm (with the bare SMPP yardstick), the modem send path and the callbacks. Extra
arguments are not passed on; run a script by itself to change its settings.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("http_submit.py", "smpp_submit.py", "modem_path.py", "callbacks.py")


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} x {model}, Python {platform.python_version()}, {platform.system()}"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    print(f"machine: {machine()}")
    failed = []
    for script in SCRIPTS:
        print(f"\n== {script} (load average {load_average()})", flush=True)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(HERE / script)], check=False)
        print(f"== {script}: {time.perf_counter() - started:.0f} s, exit {done.returncode}")
        if done.returncode:
            failed.append(script)
    print(f"\nload average at the end: {load_average()}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
