"""Hypothesis settings of the fuzzers that throw hostile input at the running doors.

`make test` runs the fixed, derandomized `quick` profile (a few seconds). A longer, random run
for a nightly job: `EDGEGW_FUZZ=nightly .venv/bin/pytest -k fuzz` (see the README, Security)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# The fuzzers start a gateway or listener per example and check it with fixtures that outlive
# one example on purpose (the log capture, the temporary store folder).
_BASE = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("fuzz-quick", _BASE, max_examples=20, derandomize=True, database=None)
settings.register_profile("fuzz-nightly", _BASE, max_examples=1500)

FUZZ = settings.get_profile(f"fuzz-{os.environ.get('EDGEGW_FUZZ', 'quick')}")
