"""System tools some tests need: installed with apt-get when missing (the test setup runs as
root on Debian), and the test skipped with the reason only when that is impossible."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def require_tool(command: str, package: str) -> str:
    """The path of `command`, installing Debian `package` first when it is missing."""
    found = shutil.which(command)
    if found is not None:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip(f"{command} is missing and there is no apt-get to install {package}")
    # Another process may hold the dpkg lock for a while: wait for it rather than fail.
    wait = ["-o", "DPkg::Lock::Timeout=240"]
    install = ["apt-get", *wait, "install", "-y", "-q", package]
    installed = subprocess.run(install, capture_output=True, text=True, timeout=600)
    if shutil.which(command) is None:  # the package lists may be missing or stale
        subprocess.run(["apt-get", *wait, "update", "-q"], capture_output=True, timeout=600)
        installed = subprocess.run(install, capture_output=True, text=True, timeout=600)
    found = shutil.which(command)
    if found is None:
        pytest.skip(
            f"{command} could not be installed (apt-get install {package}): "
            f"{installed.stderr.strip()[-200:]}"
        )
    return found
