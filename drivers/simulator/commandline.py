"""The V.250 command line: split what follows "AT" into commands and read their parameters.

Pure, no I/O. ITU-T V.250 section 5.2 (command line), 5.3 (basic and S-parameter commands) and
5.4 (extended syntax: `+NAME`, `?`, `=?`, `=<values>`, `;` between commands).
"""

from __future__ import annotations

import enum
import re
import string

import msgspec


class CommandSyntaxError(ValueError):
    """The line or a parameter breaks the syntax: the modem answers plain ERROR."""


class Form(enum.Enum):
    """How a command was written (V.250 section 5.4)."""

    BASIC = "basic"  # ATE0, ATZ, ATI
    EXEC = "exec"  # AT+CSQ
    READ = "read"  # AT+CMGF?
    TEST = "test"  # AT+CMGF=?
    SET = "set"  # AT+CMGF=0


class Command(msgspec.Struct, frozen=True):
    name: str  # upper case: "E", "&F", "S", "+CMGS"
    form: Form
    args: str  # as written after the name ("0", "3=13", '"SM","SM"'), quotes kept


def split_commands(body: str) -> list[Command]:
    """The commands of one command line after "AT" (V.250 section 5.2 and 5.4).

    Basic commands follow each other directly (`E0V1`), extended commands are separated by `;`
    (`+CMEE=1;+CMGF=0`). Spaces outside strings are ignored and names are case-insensitive.
    Raises the ERROR fault on anything else.
    """
    text = _normalise(body)
    commands: list[Command] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == ";":
            index += 1
        elif char in "+^$%*#!":
            end = index + 1
            while end < len(text) and text[end] in _NAME_CHARACTERS:
                end += 1
            name = text[index:end]
            stop = _unquoted_find(text, ";", end)
            commands.append(_extended(name, text[end:stop]))
            index = stop
        elif char == "&" or char in string.ascii_uppercase:
            end = index + (2 if char == "&" else 1)
            name = text[index:end]
            if name == "S":
                while end < len(text) and text[end] in string.digits + "=?":
                    end += 1
                # "S3?" reads, "S3=13" writes (V.250 section 6.1.3).
                commands.append(Command("S", Form.BASIC, text[index + 1 : end].removesuffix("?")))
            else:
                while end < len(text) and text[end] in string.digits:
                    end += 1
                commands.append(Command(name, Form.BASIC, text[index + len(name) : end]))
            index = end
        else:
            raise CommandSyntaxError(body)
    return commands


_NAME_CHARACTERS = frozenset(string.ascii_uppercase + string.digits + "!%-./:_")


def _extended(name: str, rest: str) -> Command:
    if len(name) < 2:
        raise CommandSyntaxError(name)
    if rest == "":
        return Command(name, Form.EXEC, "")
    if rest == "?":
        return Command(name, Form.READ, "")
    if rest == "=?":
        return Command(name, Form.TEST, "")
    if rest.startswith("="):
        return Command(name, Form.SET, rest[1:])
    raise CommandSyntaxError(name + rest)


def _normalise(body: str) -> str:
    """Upper case and without spaces, except inside double-quoted strings."""
    if '"' not in body and body.isascii():
        # Most lines (AT+CMGS=23): no string to keep as typed, so the whole line at once.
        return body.replace(" ", "").upper()
    out: list[str] = []
    quoted = False
    for char in body:
        if char == '"':
            quoted = not quoted
            out.append(char)
        elif quoted:
            out.append(char)
        elif char != " ":
            # ASCII only: "ß".upper() is two characters.
            out.append(char.upper() if char.isascii() else char)
    if quoted:
        raise CommandSyntaxError(body)
    return "".join(out)


def _unquoted_find(text: str, target: str, start: int) -> int:
    if '"' not in text:
        found = text.find(target, start)
        return len(text) if found < 0 else found
    quoted = False
    for index in range(start, len(text)):
        if text[index] == '"':
            quoted = not quoted
        elif text[index] == target and not quoted:
            return index
    return len(text)


def _split_params(args: str) -> list[str]:
    params: list[str] = []
    start = 0
    while True:
        comma = _unquoted_find(args, ",", start)
        params.append(args[start:comma])
        if comma == len(args):
            return params
        start = comma + 1


def parameters(args: str, most: int) -> list[str | None]:
    """Exactly `most` parameters (missing ones None); ERROR if there are more."""
    params: list[str | None] = [param or None for param in _split_params(args)]
    if len(params) > most:
        raise CommandSyntaxError(args)
    return params + [None] * (most - len(params))


def quoted_or_bare(args: str) -> list[str]:
    """Parameters with their quotes removed (PINs and addresses may come quoted or bare)."""
    values: list[str] = []
    for param in _split_params(args):
        if len(param) >= 2 and param[0] == param[-1] == '"':
            values.append(param[1:-1])
        elif '"' in param:
            raise CommandSyntaxError(args)
        else:
            values.append(param)
    return values


def integer(param: str | None, low: int, high: int) -> int:
    # isascii: "²" is a digit to str.isdigit but not to int().
    if param is None or not (param.isascii() and param.isdigit()) or not low <= int(param) <= high:
        raise CommandSyntaxError(param or "")
    return int(param)


def on_off(args: str) -> bool:
    """A V.250 on/off parameter: missing means 0."""
    if args not in ("", "0", "1"):
        raise CommandSyntaxError(args)
    return args == "1"


def find_prefix(text: str) -> int:
    """Index of the first "AT" (any case) in a command line, or -1."""
    found = _PREFIX.search(text)
    return -1 if found is None else found.start()


_PREFIX = re.compile("[Aa][Tt]")
