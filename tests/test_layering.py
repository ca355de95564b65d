"""The layering of ARCHITECTURE.md, checked from the source: pure codecs do no I/O, and
`drivers` never imports `edgegw`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Sans-IO modules: bytes or text in, events or bytes out.
PURE = [
    *sorted((ROOT / "drivers" / "gsm").glob("*.py")),
    ROOT / "drivers" / "at" / "framer.py",
    ROOT / "drivers" / "at" / "commands.py",
    *(
        ROOT / "drivers" / "simulator" / f"{name}.py"
        for name in ("engine", "commandline", "codes", "profiles", "options", "sent")
    ),
    ROOT / "edgegw" / "http" / "puzzel.py",
    ROOT / "edgegw" / "delivery" / "payload.py",
    ROOT / "edgegw" / "pipeline" / "keywords.py",
    ROOT / "edgegw" / "pipeline" / "drstatus.py",
    ROOT / "edgegw" / "pipeline" / "pacing.py",
    ROOT / "edgegw" / "pipeline" / "readiness.py",
    *(
        ROOT / "edgegw" / "smpp" / f"{name}.py"
        for name in (
            "constants",
            "errors",
            "tlv",
            "pdu",
            "session",
            "submission",
            "outbound",
            "config",
        )
    ),
    ROOT / "edgegw" / "model.py",
]
FORBIDDEN_IN_PURE = {"trio", "sqlite3", "serial", "socket", "logging", "asyncio", "time", "os"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_does_no_io(path: Path) -> None:
    assert path.is_file(), f"{path} is listed as pure but does not exist"
    bad = {name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN_IN_PURE}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_drivers_never_import_edgegw() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] == "edgegw"
        )
        for path in (ROOT / "drivers").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_check_sees_imports() -> None:
    source = ROOT / "edgegw" / "gateway.py"
    assert "trio" in imported_modules(source)
