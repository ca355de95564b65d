"""The layering of the README (Design rules: layers), checked from the source for every module
of `edgegw` and `drivers`: pure codecs -> core -> trio shells -> composition root, and `drivers`
never imports `edgegw`.

Deny by default: a module is a codec (the strictest layer) unless a rule below places it in a
looser one, so a new module is checked without editing this test. A codec imports no I/O,
clock or concurrency module and no core, shell or root module; core imports no shell or root
module. Since each module is checked against the layers of what it imports, the rules hold
transitively along the explicit import edges (importing a package counts as importing its
`__init__`).
"""

from __future__ import annotations

import ast
import enum
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class Layer(enum.IntEnum):
    CODEC = 0
    CORE = 1
    SHELL = 2
    ROOT = 3


# First match wins; a module matching none is a codec.
RULES: list[tuple[str, Layer]] = [
    ("edgegw/gateway.py", Layer.ROOT),
    ("edgegw/__main__.py", Layer.ROOT),
    # Pure modules inside looser packages.
    ("edgegw/pipeline/keywords.py", Layer.CODEC),
    ("edgegw/pipeline/drstatus.py", Layer.CODEC),
    ("edgegw/pipeline/pacing.py", Layer.CODEC),
    ("edgegw/pipeline/router.py", Layer.CODEC),
    ("edgegw/pipeline/sendwindow.py", Layer.CODEC),
    ("edgegw/delivery/payload.py", Layer.CODEC),
    ("edgegw/delivery/config.py", Layer.CODEC),
    ("edgegw/delivery/oauth.py", Layer.CODEC),
    ("edgegw/delivery/__init__.py", Layer.CORE),
    # I/O shells: listeners, clients, serial ports, the simulator's pty and timer. In
    # edgegw/http, the server on h11 and trio and the routes that answer through it; the
    # request codecs there (puzzel, soap, inputs, limits, forwarded) and any new module are
    # codecs.
    ("edgegw/http/__init__.py", Layer.SHELL),
    ("edgegw/http/server.py", Layer.SHELL),
    ("edgegw/http/app.py", Layer.SHELL),
    ("edgegw/http/guard.py", Layer.SHELL),
    ("edgegw/http/idempotency.py", Layer.SHELL),
    ("edgegw/http/management.py", Layer.SHELL),
    ("edgegw/http/monitoring.py", Layer.SHELL),
    ("edgegw/http/problems.py", Layer.SHELL),
    ("edgegw/http/receive.py", Layer.SHELL),
    ("edgegw/http/soap_routes.py", Layer.SHELL),
    ("edgegw/http/status.py", Layer.SHELL),
    ("edgegw/smpp/server.py", Layer.SHELL),
    ("edgegw/smpp/__init__.py", Layer.SHELL),
    ("edgegw/smtp/server.py", Layer.SHELL),
    ("edgegw/metrics.py", Layer.SHELL),
    ("edgegw/startup.py", Layer.SHELL),
    ("edgegw/systemd.py", Layer.SHELL),
    ("edgegw/tls.py", Layer.SHELL),
    ("edgegw/delivery/worker.py", Layer.SHELL),
    ("drivers/at/driver.py", Layer.SHELL),
    ("drivers/at/__init__.py", Layer.SHELL),
    ("drivers/at/locate.py", Layer.SHELL),
    ("drivers/transport.py", Layer.SHELL),
    ("drivers/ports.py", Layer.SHELL),
    ("drivers/simulator/shell.py", Layer.SHELL),
    ("drivers/simulator/kerneltimer.py", Layer.SHELL),
    ("drivers/simulator/network.py", Layer.SHELL),
    ("drivers/simulator/__init__.py", Layer.SHELL),
    # Core: the store, the pipeline, the outboxes, the clock, the configuration, and the
    # interfaces the core and the shells share (they name trio's types).
    ("edgegw/store/*", Layer.CORE),
    ("edgegw/pipeline/*", Layer.CORE),
    ("edgegw/delivery/*", Layer.CORE),
    ("edgegw/clock.py", Layer.CORE),
    ("edgegw/logins.py", Layer.CORE),
    ("edgegw/offload.py", Layer.CORE),
    ("edgegw/loglimit.py", Layer.CORE),
    ("edgegw/retention.py", Layer.CORE),
    ("edgegw/backup.py", Layer.CORE),
    ("edgegw/udev.py", Layer.CORE),
    ("edgegw/config.py", Layer.CORE),
    # It checks scrypt hashes in worker threads under a limiter of its own.
    ("edgegw/passwords.py", Layer.CORE),
    ("edgegw/smpp/backend.py", Layer.CORE),
    ("drivers/modem.py", Layer.CORE),
]

FORBIDDEN_IN_CODEC = {
    "trio",
    "sqlite3",
    "socket",
    "threading",
    "h11",
    "httpx",
    "serial",
    "os",
    "time",
    "logging",
    "asyncio",
    "smtplib",
    "subprocess",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    module_name(path): path
    for top in ("edgegw", "drivers")
    for path in sorted((ROOT / top).rglob("*.py"))
}


def layer(name: str) -> Layer:
    return placed(str(MODULES[name].relative_to(ROOT)))


def placed(relative: str) -> Layer:
    """The layer of the module at `relative` (to the repository), whether or not it exists."""
    for pattern, found in RULES:
        if fnmatch(relative, pattern):
            return found
    return Layer.CODEC


def imported_modules(path: Path) -> set[str]:
    """Every module the file imports explicitly: `from a.b import c` is `a.b`, and `a.b.c`
    too when that is a module of ours; a relative import by the absolute name it resolves to
    (`from .server import x` in edgegw/smpp is `edgegw.smpp.server`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # The package a relative import starts from: the module's own for an __init__.py.
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(
                f"{module}.{alias.name}"
                for alias in node.names
                if f"{module}.{alias.name}" in MODULES
            )
    return names


def internal(names: set[str]) -> set[str]:
    return {name for name in names if name in MODULES}


@pytest.mark.parametrize("name", sorted(MODULES), ids=str)
def test_each_module_imports_only_its_own_layer_or_below(name: str) -> None:
    own = layer(name)
    names = imported_modules(MODULES[name])
    if own is Layer.CODEC:
        bad = {n for n in names if n.split(".")[0] in FORBIDDEN_IN_CODEC}
        assert not bad, f"{name} is a codec but imports {sorted(bad)}"
    above = {other: layer(other).name for other in internal(names) if layer(other) > own}
    assert not above, f"{name} ({own.name}) imports {above}"


def test_codecs_reach_no_io_through_their_imports() -> None:
    """The closure of each codec's imports holds codecs only (so no I/O at any depth)."""
    for name in MODULES:
        if layer(name) is not Layer.CODEC:
            continue
        seen: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            todo += internal(imported_modules(MODULES[current]))
        assert {other for other in seen if layer(other) is not Layer.CODEC} == set(), name


def test_drivers_never_import_edgegw() -> None:
    offenders = {
        name: sorted(n for n in imported_modules(path) if n.split(".")[0] == "edgegw")
        for name, path in MODULES.items()
        if name.startswith("drivers")
    }
    assert {name: names for name, names in offenders.items() if names} == {}


def test_the_check_sees_imports_and_places_new_modules_as_codecs() -> None:
    assert "trio" in imported_modules(ROOT / "edgegw" / "gateway.py")
    assert "edgegw.store.transactions" in imported_modules(ROOT / "edgegw" / "store" / "engine.py")
    assert layer("edgegw.model") is Layer.CODEC
    assert layer("edgegw.smpp.pdu") is Layer.CODEC  # no rule names it
    assert layer("edgegw.store.engine") is Layer.CORE
    assert layer("edgegw.gateway") is Layer.ROOT


@pytest.mark.parametrize(
    "relative",
    ["edgegw/http/multipart.py", "edgegw/smpp/tlv_table.py", "edgegw/smtp/headers.py"],
)
def test_a_new_module_of_a_package_of_codecs_is_checked_as_a_codec(relative: str) -> None:
    """The HTTP, SMPP and SMTP packages hold codecs and shells: a module no rule names is a
    codec there, held to no I/O, until a rule places it in a looser layer."""
    assert placed(relative) is Layer.CODEC


def test_a_relative_import_is_checked_by_the_module_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A codec that reaches a shell or the core through `from .x import y` or
    `from .. import y` is seen importing it, as with the absolute name."""
    assert layer("edgegw.smpp.server") is Layer.SHELL
    package = tmp_path / "edgegw" / "smpp"
    package.mkdir(parents=True)
    scratch = package / "scratch.py"
    scratch.write_text("from .server import serve_smpp\nfrom .. import store\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    names = imported_modules(scratch)
    assert {"edgegw.smpp.server", "edgegw.store"} <= names
