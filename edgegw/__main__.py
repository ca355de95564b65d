"""The `edgegw` command line: serve, check-config, send, status, modems, simulate-mo, backup,
hash-password, udev-rules and simulate-modem.

A thin layer over the gateway and the simulator; `send`, `status`, `modems` and `simulate-mo`
talk to a running gateway over its own HTTP API, with the credentials of a service from the
config file.
"""

from __future__ import annotations

import argparse
import base64
import functools
import gc
import getpass
import io
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import msgspec
import trio

from edgegw import __version__, systemd
from edgegw.config import (
    Config,
    ConfigError,
    ServiceConfig,
    config_warnings,
    load_config,
    plaintext_exposure,
    prefix_warnings,
)
from edgegw.startup import StartupError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

EXIT_STARTUP = 1  # the gateway could not start: one line on stderr says why and the fix
EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3  # send, status, modems, simulate-mo: no answer from the gateway
EXIT_REJECTED = 4  # ... the gateway answered with an HTTP error, or refused the message
EXIT_USAGE = 64  # a bad command line (BSD sysexits EX_USAGE), apart from a bad config's 2
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # the reader of stdout left, as a shell shows SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command and return its exit status. One rule for every command's output, --help
    and --version included: it is flushed here, not at the interpreter's exit, where a reader
    that went away is a traceback, and a reader that left stops the command quietly."""
    try:
        status = _run(argv)
        sys.stdout.flush()
        return status
    except (BrokenPipeError, BaseExceptionGroup) as exc:
        # A command that runs under trio (simulate-modem) gets the error in a group.
        if isinstance(exc, BaseExceptionGroup) and exc.split(BrokenPipeError)[1] is not None:
            raise
        # The reader of the output left (`edgegw modems --json | head`): stop as a tool that
        # SIGPIPE ends, quietly, with what is left unwritten going to /dev/null at the exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = _parser().parse_args(argv)
    except _ParserExit as done:
        return done.status
    if isinstance(sys.stdout, io.TextIOWrapper):
        # Answers are printed with their characters; a terminal whose encoding lacks one
        # gets its escape rather than a UnicodeEncodeError.
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        return int(args.command(args))
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_CONFIG
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except GatewayCallFailed as exc:
        print(exc, file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130


class UsageError(Exception):
    """A command line argparse took but the command cannot (a `--service` the config does not
    have, a `--set` simulate-modem does not take): exit 64, as argparse's own usage errors, so
    that 2 always means the config file has problems."""


class _ParserExit(Exception):
    """argparse is done: it printed the help, the version or a usage error."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse with its own exit status for usage errors, so a script can tell a mistyped
    command (64) from a config with problems (2); and an exit that leaves what it printed to
    `main` to flush, as a command's output is."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._print_message(message, sys.stderr)
        raise _ParserExit(status)

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        # argparse drops an OSError of this write: where stdout is unbuffered, the help or the
        # version is written here, not at main's flush, and a reader that left must end the
        # command with 141 as it does any other output.
        if message:
            (file or sys.stderr).write(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgegw", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edgegw {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="path of the TOML config")
    serve.add_argument(
        "--debug", action="store_true", help="log at debug level; start-up failures with traceback"
    )
    serve.set_defaults(command=_serve)

    check = commands.add_parser(
        "check-config", help="check a config file; exit 2 on problems, warn about absent modems"
    )
    check.add_argument(
        "--config", dest="config_option", metavar="CONFIG", help="path of the TOML config"
    )
    # The path without --config, as earlier versions took it; left out of the help.
    check.add_argument("config", nargs="?", help=argparse.SUPPRESS)
    check.set_defaults(command=_check_config)

    send = commands.add_parser("send", help="send one SMS through a running gateway")
    send.add_argument("--config", required=True, help="the running gateway's config")
    send.add_argument("--to", required=True, help="recipient, e.g. +4741000000")
    send.add_argument("--text", required=True, help="message text")
    send.add_argument("--service", type=int, help="service id (default: the first service)")
    send.add_argument(
        "--unicode",
        action="store_true",
        help="send as UCS-2 when the text needs it (emoji, most scripts): AUTO_DETECT",
    )
    send.set_defaults(command=_send)

    status = commands.add_parser("status", help="show a message's state")
    status.add_argument("--config", required=True, help="the running gateway's config")
    status.add_argument("message_id", help="the messageId returned by a send")
    status.add_argument("--service", type=int, help="service id (default: the first service)")
    status.set_defaults(command=_status)

    modems = commands.add_parser("modems", help="show every modem's health and queue")
    modems.add_argument("--config", required=True, help="the running gateway's config")
    modems.add_argument("--service", type=int, help="service id (default: the first service)")
    modems.add_argument("--json", action="store_true", help="print the raw JSON answer")
    modems.set_defaults(command=_modems)

    mo = commands.add_parser(
        "simulate-mo", help="make an SMS arrive at a simulated modem of a running gateway"
    )
    mo.add_argument("--config", required=True, help="the running gateway's config")
    mo.add_argument("--from", dest="originator", required=True, help="sender, e.g. +4799999999")
    mo.add_argument("--text", required=True, help="message text")
    mo.add_argument("--modem", help="simulated modem name (default: the first)")
    mo.add_argument("--service", type=int, help="whose credentials (default: the first service)")
    mo.set_defaults(command=_simulate_mo)

    backup = commands.add_parser(
        "backup", help="copy the store consistently, also while the gateway runs"
    )
    backup.add_argument("--config", required=True, help="the gateway's config")
    backup.add_argument("out", help="the new file to write the copy to")
    backup.set_defaults(command=_backup)

    hasher = commands.add_parser(
        "hash-password",
        help="print an scrypt hash of a password (read from stdin, or asked for twice)",
        description="Print an scrypt hash of a password for a `password` key of the config: the"
        " first line of stdin, or asked for twice on a terminal.",
    )
    hasher.set_defaults(command=_hash_password)

    udev = commands.add_parser(
        "udev-rules", help="print udev rules that keep ModemManager off the configured modems"
    )
    udev.add_argument("--config", required=True, help="path of the TOML config")
    udev.set_defaults(command=_udev_rules)

    simulate = commands.add_parser(
        "simulate-modem", help="run a simulated modem on a new pseudo-terminal and print its path"
    )
    simulate.add_argument("--profile", default="default", help="quirk profile")
    simulate.add_argument("--record", help="append each SMS sent to the network to this file")
    simulate.add_argument(
        "--send-delay", type=float, help="seconds per +CMGS (default: the profile's)"
    )
    simulate.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any [modems.simulator] key, e.g. drop_final=0.05 or fragment=true (repeatable)",
    )
    simulate.set_defaults(command=_simulate_modem)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from edgegw.store import StoreDamaged

    config = load_config(args.config)
    logging.basicConfig(
        level="DEBUG" if args.debug else config.gateway.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    journal = systemd.to_journal(sys.stderr)
    if journal:
        sys.excepthook = systemd.journal_excepthook
    for handler in logging.getLogger().handlers:
        if journal:
            handler.setFormatter(systemd.JournalFormatter())
        if not args.debug:
            handler.addFilter(_store_failures_in_one_line)
    exposure = plaintext_exposure(args.config, config)
    if exposure is not None:
        logging.getLogger("edgegw").warning("%s", exposure)
    for warning in prefix_warnings(config):
        logging.getLogger("edgegw").warning("%s", warning)
    failed = interrupted = False
    try:
        trio.run(_serve_until_signalled, config)
    except* (StartupError, StoreDamaged) as group:
        if args.debug:
            raise
        # One line each: what failed and the fix; the traceback only with --debug. A damaged
        # store stops the gateway whenever it is found, and may be found by several tasks.
        for line in dict.fromkeys(f"edgegw: {exc}" for exc in _leaves(group)):
            systemd.print_error(line)
        failed = True
    except* KeyboardInterrupt:
        # Ctrl-C before the signal handlers were in place: a quiet stop, as after them.
        interrupted = True
    if failed:
        return EXIT_STARTUP
    return 130 if interrupted else 0


def _store_failures_in_one_line(record: logging.LogRecord) -> bool:
    """A task that met a damaged store logs it as any failure, with its traceback; the
    gateway then stops on it with one line. The traceback says nothing more: the record keeps
    its message and the damage, in one line (with --debug, the traceback too). A full disk is
    logged by the store once, with its cause, and again when it takes writes: the record of
    each request or task it refused meanwhile is left out (with --debug, kept)."""
    from edgegw.store import StoreDamaged, StoreUnwritable

    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, StoreUnwritable):
        return False
    if isinstance(error, StoreDamaged):
        record.msg, record.args = f"{record.getMessage()}: {error}", None
        record.exc_info = record.exc_text = None
    return True


def _leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    leaves: list[Exception] = []
    for exc in group.exceptions:
        leaves += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return leaves


def freeze_start_up_heap() -> None:
    """Move everything start-up made (modules, config, tables) out of the garbage collector's
    sight: it lives as long as the process, and a full collection walking it in the middle of a
    big batch stalled the event loop for tens of milliseconds (README, benchmarks)."""
    gc.collect()
    gc.freeze()


async def _serve_until_signalled(config: Config) -> None:
    from edgegw.gateway import Gateway

    gateway = Gateway(config)
    interval = systemd.watchdog_interval()
    # SIGHUP too: the terminal it was started from closed. Left to its default, it ended the
    # process with messages half sent, for the crash policy to settle. Under systemd it is a
    # reload asked for, which edgegw has none of: stopping would leave the service down.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as watched:
            # The watchdog is fed from the event loop for as long as the gateway runs,
            # shutdown included: a stalled loop stops feeding it.
            if interval is not None:
                watched.start_soon(systemd.feed_watchdog, interval)
            async with trio.open_nursery() as nursery:
                await nursery.start(gateway.run)
                systemd.notify("READY=1")
                freeze_start_up_heap()

                async def stop_on_signal() -> None:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if signum == signal.SIGHUP and systemd.supervised():
                            logging.getLogger("edgegw").warning(
                                "SIGHUP ignored: edgegw has no reload; restart the service"
                                " to apply a changed config"
                            )
                            continue
                        logging.getLogger("edgegw").info("%s received", name)
                        systemd.notify("STOPPING=1")
                        gateway.stop()
                        return

                nursery.start_soon(stop_on_signal)
            watched.cancel_scope.cancel()


def _check_config(args: argparse.Namespace) -> int:
    path = args.config_option or args.config
    if path is None or (args.config_option and args.config):
        raise UsageError("edgegw check-config: give the config file once: --config FILE")
    config = load_config(path)
    for warning in config_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{path}: ok")
    return 0


def _backup(args: argparse.Namespace) -> int:
    from edgegw.backup import BackupError, backup_store

    config = load_config(args.config)
    try:
        messages = backup_store(config.gateway.store, args.out)
    except BackupError as exc:
        print(f"edgegw backup: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    print(f"{args.out}: a copy of {config.gateway.store} with {messages} messages")
    return 0


def _hash_password(args: argparse.Namespace) -> int:
    from edgegw.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("edgegw hash-password: the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("edgegw hash-password: an empty password")
    print(hash_password(password))
    return 0


def _udev_rules(args: argparse.Namespace) -> int:
    from edgegw.udev import udev_rules

    print(udev_rules(load_config(args.config).modems), end="")
    return 0


def _print_problems(exc: ConfigError) -> None:
    # A service that does not start for its config: an error in the journal, too.
    systemd.print_error(
        "\n".join(
            [f"{exc.source}: {len(exc.problems)} problem(s)"]
            + [f"  {problem}" for problem in exc.problems]
        )
    )


def _service(config: Config, service_id: int | None, source: str) -> ServiceConfig:
    """The service whose credentials a call to the running gateway logs in with: it needs the
    plaintext password, which a hash in the config cannot give back."""
    from edgegw.passwords import is_hashed

    for index, service in enumerate(config.services):
        if service_id is None or service.id == service_id:
            if is_hashed(service.password):
                raise ConfigError(
                    source,
                    [
                        f"services[{index}].password: a hash; send, status, modems and"
                        " simulate-mo log in with the service's password, so they need it in"
                        " plaintext (a copy of the config with it will do)"
                    ],
                )
            return service
    raise UsageError(f"edgegw: --service {service_id}: no service with that id in {source}")


def _base_url(config: Config) -> str:
    host = config.http.host if config.http.host not in ("0.0.0.0", "::") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address, in brackets in a URL (RFC 3986 3.2.2)
    return f"http://{host}:{config.http.port}"


def _send(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    service = _service(config, args.service, args.config)
    body = {
        "serviceId": service.id,
        "username": service.username,
        "password": service.password,
        "message": [
            {
                "recipient": args.to,
                "content": args.text,
                # The Puzzel setting behind AUTO_DETECT: UCS-2 when GSM 03.38 cannot carry it.
                **({"settings": {"autoDetectEncoding": True}} if args.unicode else {}),
            }
        ],
    }
    request = urllib.request.Request(
        _base_url(config) + "/gw/rs/sendMessages",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    answer = _fetch(request, args.config)
    status = answer["messageStatus"][0]
    print(json.dumps(status, indent=2, ensure_ascii=False))
    return 0 if status["statusCode"] == 1 else EXIT_REJECTED


def _simulate_mo(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    service = _service(config, args.service, args.config)
    token = base64.b64encode(f"{service.username}:{service.password}".encode()).decode()
    fields = {"from": args.originator, "text": args.text}
    if args.modem:
        fields["modem"] = args.modem
    request = urllib.request.Request(
        _base_url(config) + "/status/simulate-mo",
        data=json.dumps(fields).encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    _fetch(request, args.config)
    print(f"an SMS from {args.originator} arrived at the simulated modem")
    return 0


def _status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    service = _service(config, args.service, args.config)
    token = base64.b64encode(f"{service.username}:{service.password}".encode()).decode()
    request = urllib.request.Request(
        _base_url(config) + "/api/messages/" + urllib.parse.quote(args.message_id, safe=""),
        headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
    )
    answer = _fetch(request, args.config)
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0


def _modems(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    service = _service(config, args.service, args.config)
    token = base64.b64encode(f"{service.username}:{service.password}".encode()).decode()
    request = urllib.request.Request(
        _base_url(config) + "/api/modems",
        headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
    )
    answer = _fetch(request, args.config)
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    for line in modems_table(answer["modems"]):
        print(line)
    print(f"queued for any modem: {answer['queued']}")
    return 0


def modems_table(modems: list[dict[str, Any]]) -> list[str]:
    """The `edgegw modems` table of the /api/modems answer's modems, header first."""
    header = ["MODEM", "STATE", "SIM", "NETWORK", "SIGNAL", "SENT", "ERR", "QUEUE", "1H/24H"]
    rows = [header]
    details = ["DETAIL"]
    for modem in modems:
        health = modem["health"]
        network = " ".join(filter(None, (health.get("operator"), health.get("registration"))))
        signal_dbm = health.get("signal_dbm")
        detail = health.get("detail", "")
        if modem.get("cappedUntil"):
            detail = f"capped until {modem['cappedUntil']}; {detail}"
        rows.append(
            [
                modem["name"],
                health["state"],
                health.get("sim", ""),
                network,
                "" if signal_dbm is None else f"{signal_dbm} dBm",
                str(health.get("sent", 0)),
                str(health.get("errors", 0)),
                str(modem["queued"] + modem["sending"]),
                f"{modem['sentLastHour']}/{modem['sentLastDay']}",
            ]
        )
        details.append(detail)
    # Each column as wide as its widest cell, so a long operator name never runs into the
    # signal; text left-aligned, numbers right-aligned.
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for row, detail in zip(rows, details, strict=True):
        cells = [
            cell.ljust(width) if column < 4 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append((" ".join(cells) + "  " + detail).rstrip())
    return lines


class GatewayCallFailed(Exception):
    """A call to the running gateway got no answer (exit 3) or an HTTP error (exit 4): a
    refused login or an unknown message id is not an unreachable gateway."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def _fetch(request: urllib.request.Request, config_path: str) -> Any:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        message = f"{request.full_url}: HTTP {exc.code}: {detail}"
        raise GatewayCallFailed(message, EXIT_REJECTED) from None
    except OSError as exc:
        # urllib wraps the socket's error ("<urlopen error [Errno 111] Connection refused>"):
        # its reason alone, and what to check, which is mostly that the gateway is not running.
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        why = getattr(reason, "strerror", None) or str(reason)
        message = (
            f"{request.full_url}: cannot reach the gateway ({why}); is `edgegw serve --config"
            f" {config_path}` running, on the [http] host and port of that file?"
        )
        raise GatewayCallFailed(message, EXIT_UNREACHABLE) from None


def _simulate_modem(args: argparse.Namespace) -> int:
    from drivers.simulator import SimulatorOptions, run_pty_simulator

    settings: dict[str, object] = {
        "profile": args.profile,
        "record": args.record,
        "send_delay": args.send_delay,
    }
    for item in args.set:
        key, equals, value = item.partition("=")
        if not equals:
            raise UsageError(f"edgegw simulate-modem: --set wants KEY=VALUE, not {item!r}")
        settings[key.strip()] = value.strip()
    try:
        # Not strict: "0.05" and "true" from the command line become a float and a bool.
        options = msgspec.convert(settings, SimulatorOptions, strict=False)
    except msgspec.ValidationError as exc:
        raise UsageError(f"edgegw simulate-modem: {exc}") from None

    def announce(path: str) -> None:
        print(path, flush=True)

    async def simulate() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(run_pty_simulator, options, announce=announce))
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

    trio.run(simulate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
