"""The gateway's configuration: TOML decoded into msgspec Structs, with every problem reported.

Unknown keys are errors. `check_config` walks the whole document and lists each problem with its
key path (msgspec alone stops at the first); relative paths resolve against the config's folder.
"""

from __future__ import annotations

import enum
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import msgspec

from drivers.at.options import AtOptions
from drivers.gsm import ParsingType
from drivers.simulator.options import SimulatorOptions
from edgegw.delivery.config import (
    CallbackEndpoint,
    ManagementConfig,
    MoEmailConfig,
    SmtpRelayConfig,
    check_endpoint,
    check_mo_email,
)
from edgegw.http.limits import HttpLimits
from edgegw.model import OriginatorType
from edgegw.networks import network_problems
from edgegw.passwords import check_hash_format, is_hashed
from edgegw.smpp.config import SmppConfig
from edgegw.smtp.config import ServiceSmtp, SmtpConfig, check_smtp
from edgegw.throttle import AuthThrottleConfig

# What a recipient prefix of a modem may be: a start of a stored recipient ("+4741000000").
_PREFIX = re.compile(r"(\+\d*)?")


class CrashPolicy(enum.StrEnum):
    """What happens to parts found in `sending` after a crash (README, Configuration)."""

    RESEND = "resend"  # at-least-once: the part goes back to the queue
    FAIL = "fail"  # at-most-once: the part and its message fail


class GatewayConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    store: str = "edgegw.db"
    in_flight_after_crash: CrashPolicy = CrashPolicy.RESEND
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class HttpConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    auth_failure_problem: bool = False
    # Reverse proxies (addresses or networks) whose X-Forwarded-For names the client; none by
    # default, so every request is from its TCP peer (edgegw.http.forwarded).
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    limits: HttpLimits = msgspec.field(default_factory=HttpLimits)


class DispatchConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    retry_initial: float = 5.0
    retry_max: float = 300.0
    max_attempts: int = 8
    queue_per_modem: int = 4
    # Seconds a modem may be down (not ready, or gone from the config) before a message with
    # parts already sent on it is resent whole on another modem (edgegw.pipeline.dispatcher).
    failover_after: float = 600.0


class ServiceConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: int
    name: str
    username: str
    password: str
    originator: str = ""
    originator_type: OriginatorType = OriginatorType.ALPHANUMERIC
    priority: int = 2
    validity: int = 173
    parsing_type: ParsingType = ParsingType.NONE
    delivery_reports: bool = False
    modems: list[str] = msgspec.field(default_factory=list)
    # Inbound whose first word is one of these (case-insensitive) goes to this service.
    keywords: list[str] = msgspec.field(default_factory=list)
    # Customer callbacks (edgegw.delivery): MO and DR endpoints, MO by email.
    mo: CallbackEndpoint | None = None
    dr: CallbackEndpoint | None = None
    mo_email: MoEmailConfig | None = None
    # MO also goes as deliver_sm to this service's bound SMPP receivers (durable, like callbacks).
    mo_smpp: bool = False
    # Email to SMS through [smtp] (spec 2.6); without it the service takes no email.
    smtp: ServiceSmtp | None = None
    # A message whose clientReference one of the service's messages of the last hour carries
    # gets status 25 "Not unique: clientReference" (spec 7.7).
    unique_client_reference: bool = False
    # A request whose batchReference one of the service's messages of the last hour carries
    # gets status 25 "Not unique: batchReference" for each of its messages (spec 7.7).
    unique_batch_reference: bool = False


class ModemConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    driver: Literal["at", "simulated"]
    at: AtOptions = msgspec.field(default_factory=AtOptions)
    simulator: SimulatorOptions = msgspec.field(default_factory=SimulatorOptions)
    service: int | None = None  # service that gets this modem's inbound without a keyword
    number: str = ""  # the SIM's own number, shown as `sno` of inbound; the name when empty
    prefixes: list[str] = msgspec.field(default_factory=list)  # recipients it sends to; [] any
    # Pacing per SIM (edgegw.pipeline.pacing): seconds between sends plus up to `jitter`, and
    # caps on parts sent in any rolling hour and 24 hours (0: no cap).
    min_interval: float = 0.0
    jitter: float = 0.0
    hourly_cap: int = 0
    daily_cap: int = 0


class InboundConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Seconds to wait for the missing parts of a concatenated SMS before it is stored incomplete.
    reassembly_timeout: float = 3600.0


class ReportsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # A status report matches the latest part sent with its TP-MR to its recipient this many
    # seconds before it arrived.
    window: float = 259200.0
    # Seconds after the SMSC gave a sent message up (its parts' TP-VP ran out) that it waits
    # for its report before it is closed with DR 362 (edgegw.pipeline.reports).
    grace: float = 3600.0
    # Seconds an unmatched report keeps being matched again (its part may not be recorded yet).
    rematch: float = 60.0


class SecurityConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[security]`: policies that guard every door against hostile clients."""

    auth: AuthThrottleConfig = msgspec.field(default_factory=AuthThrottleConfig)


class StoreConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Days a final message (with its parts and events), a delivered callback and a settled
    # status report are kept; then they are deleted (edgegw.retention). 0 keeps everything.
    keep_final_days: float = 30.0


class MonitoringConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # true: /metrics asks for a service's or the admin's HTTP Basic credentials.
    metrics_auth: bool = False
    # An account for the status page and /metrics besides every service's (both empty: none).
    admin_username: str = ""
    admin_password: str = ""


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    gateway: GatewayConfig = msgspec.field(default_factory=GatewayConfig)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    dispatch: DispatchConfig = msgspec.field(default_factory=DispatchConfig)
    services: list[ServiceConfig] = msgspec.field(default_factory=list)
    modems: list[ModemConfig] = msgspec.field(default_factory=list)
    inbound: InboundConfig = msgspec.field(default_factory=InboundConfig)
    reports: ReportsConfig = msgspec.field(default_factory=ReportsConfig)
    smtp_relay: SmtpRelayConfig = msgspec.field(default_factory=SmtpRelayConfig)
    management: ManagementConfig = msgspec.field(default_factory=ManagementConfig)
    security: SecurityConfig = msgspec.field(default_factory=SecurityConfig)
    monitoring: MonitoringConfig = msgspec.field(default_factory=MonitoringConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    # The SMPP 3.4 listener (edgegw.smpp); no [smpp] section, no listener.
    smpp: SmppConfig | None = None
    # The email-to-SMS listener (edgegw.smtp); no [smtp] section, no listener.
    smtp: SmtpConfig | None = None


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists each one with its key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


def load_config(path: str | Path) -> Config:
    """Read, check and decode a config file; relative paths resolve against its folder."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    problems = check_config(raw)
    if problems:
        raise ConfigError(str(path), problems)
    config = msgspec.convert(raw, Config)
    return _resolve_paths(config, path.resolve().parent)


def prefix_warnings(config: Config) -> list[str]:
    """A modem's recipient prefix that no recipient can start with (no +, a space, 0046), as
    recipients are stored "+4741000000": the modem never sends. A warning and not a problem,
    since such a config started the gateway before this was checked, whose other modems send;
    refused, it would stop the whole gateway at the restart of an upgrade."""
    return [
        f"modems[{index}].prefixes: {prefix!r} is never matched; a prefix is + and digits, as"
        " recipients are stored (+4741000000), so this modem sends to no recipient it names"
        for index, modem in enumerate(config.modems)
        for prefix in modem.prefixes
        if _PREFIX.fullmatch(prefix) is None
    ]


def config_warnings(config: Config) -> list[str]:
    """What may be wrong without making the config unusable: a recipient prefix never matched
    (`prefix_warnings`); and on this box now, a modem port that does not exist (unplugged, or
    named wrongly), for which the gateway waits and keeps trying, and a certificate, key or CA
    file that this user cannot read, which `serve` (perhaps as another user) will refuse if it
    cannot read it either."""
    warnings = prefix_warnings(config)
    warnings += [
        f"{key}: {path} is not there, or this user cannot read it; serve needs to read it"
        for key, path in _files(config)
        if path and not os.access(path, os.R_OK)
    ]
    for index, modem in enumerate(config.modems):
        port = modem.at.port
        if modem.driver == "at" and port and "://" not in port and not os.path.exists(port):
            found_by = (
                " (it is also looked for by imei/iccid)" if modem.at.imei or modem.at.iccid else ""
            )
            warnings.append(
                f"modems[{index}].at.port: {port} does not exist now; is the modem plugged "
                f"in?{found_by}"
            )
    return warnings


def _files(config: Config) -> list[tuple[str, str]]:
    """(key path, file) of every certificate, key and CA file the config names."""
    files = [
        (f"{door}.{key}", getattr(settings, key))
        for door, settings in (("smpp", config.smpp), ("smtp", config.smtp))
        if settings is not None
        for key in ("tls_cert_file", "tls_key_file")
    ]
    for index, service in enumerate(config.services):
        for kind, endpoint in (("mo", service.mo), ("dr", service.dr)):
            if endpoint is not None:
                files.append((f"services[{index}].{kind}.ca_file", endpoint.ca_file))
    return files


def check_config(raw: dict[str, Any]) -> list[str]:
    """Every problem in a decoded TOML document, each prefixed with its key path."""
    problems = _check_value(raw, Config, "")
    if not problems:
        problems = _check_meaning(msgspec.convert(raw, Config))
    return problems


def _check_value(value: Any, tp: Any, path: str) -> list[str]:
    struct = _struct_type(tp)
    if struct is not None and isinstance(value, dict):
        return _check_struct(value, struct, path)
    if typing.get_origin(tp) is list and isinstance(value, list):
        (item_type,) = typing.get_args(tp)
        problems: list[str] = []
        for index, item in enumerate(value):
            problems += _check_value(item, item_type, f"{path}[{index}]")
        return problems
    return _converted(value, tp, path)


def _converted(value: Any, tp: Any, path: str) -> list[str]:
    """The problem msgspec finds converting `value` to `tp`, named by `path`; [] when none."""
    try:
        msgspec.convert(value, tp)
    except msgspec.ValidationError as exc:
        return [f"{path or '(top)'}: {str(exc).split(' - at ')[0]}"]
    if isinstance(value, float) and not math.isfinite(value):
        # NaN passes every range check (each comparison is false), then acts as no number; inf
        # is no time a wait, a rest or a Retry-After can count down (math.ceil(inf) raises).
        return [f"{path}: must be a finite number, not {value}"]
    return []


def _check_struct(table: dict[str, Any], struct: type[msgspec.Struct], path: str) -> list[str]:
    fields = {field.encode_name: field for field in msgspec.structs.fields(struct)}
    problems = [
        f"{_join(path, key)}: unknown key (known: {', '.join(sorted(fields))})"
        for key in table
        if key not in fields
    ]
    for name, field in fields.items():
        if name in table:
            problems += _check_value(table[name], field.type, _join(path, name))
        elif field.required:
            problems.append(f"{_join(path, name)}: required key is missing")
    if not problems:
        # Every key has its type: what is left is the struct's own check of its values
        # (`__post_init__`, e.g. a simulator's signal or an AT timeout), named by its table.
        problems = _converted(table, struct, path)
    return problems


def _struct_type(tp: Any) -> type[msgspec.Struct] | None:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(members) == 1:
            return _struct_type(members[0])
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _passwords(config: Config) -> list[tuple[str, str]]:
    """Every password the gateway checks, with its key path."""
    found = [(f"services[{i}].password", s.password) for i, s in enumerate(config.services)]
    if config.smpp is not None:
        found += [
            (f"smpp.accounts[{i}].password", account.password)
            for i, account in enumerate(config.smpp.accounts)
        ]
    if config.monitoring.admin_password:
        found.append(("monitoring.admin_password", config.monitoring.admin_password))
    return found


def plaintext_exposure(path: str | Path, config: Config) -> str | None:
    """A warning when the config file is readable by others and holds a plaintext password."""
    try:
        others_read = os.stat(path).st_mode & 0o004
    except OSError:
        return None
    plaintext = [key for key, password in _passwords(config) if not is_hashed(password)]
    if not others_read or not plaintext:
        return None
    return (
        f"{path} is readable by every user and holds plaintext passwords ({', '.join(plaintext)}):"
        " chmod 640 it, or put hashes from `edgegw hash-password` there instead"
    )


def _check_meaning(config: Config) -> list[str]:
    problems: list[str] = []
    for key, password in _passwords(config):
        if is_hashed(password):
            reason = check_hash_format(password)
            if reason is not None:
                problems.append(f"{key}: {reason}")
    modem_names = [modem.name for modem in config.modems]
    problems += _duplicates("modems", "name", modem_names)
    problems += _duplicates("services", "id", [service.id for service in config.services])
    problems += _duplicates("services", "username", [s.username for s in config.services])
    if not config.services:
        problems.append("services: at least one service is needed")
    if not config.modems:
        problems.append("modems: at least one modem is needed")
    for index, modem in enumerate(config.modems):
        # Without a port the driver finds the modem by a scan for its IMEI or ICCID.
        if modem.driver == "at" and not (modem.at.port or modem.at.imei or modem.at.iccid):
            problems.append(
                f"modems[{index}].at.port: the at driver needs a port or URL, or an imei or"
                " iccid to find the modem by"
            )
    for index, service in enumerate(config.services):
        where = f"services[{index}]"
        if service.priority not in (1, 2, 3):
            problems.append(f"{where}.priority: must be 1, 2 or 3")
        if not 0 <= service.validity <= 173:
            problems.append(f"{where}.validity: must be a validity code from 0 to 173")
        problems += [
            f"{where}.modems: no modem is named {name!r}"
            for name in service.modems
            if name not in modem_names
        ]
    if bool(config.monitoring.admin_username) != bool(config.monitoring.admin_password):
        problems.append("monitoring.admin_password: admin_username and admin_password go together")
    if config.store.keep_final_days < 0:
        problems.append("store.keep_final_days: must not be negative")
    if not 0 <= config.http.port <= 65535:
        problems.append("http.port: must be from 0 to 65535")
    problems += network_problems("http.trusted_proxies", config.http.trusted_proxies, proxies=True)
    if config.dispatch.max_attempts < 1:
        problems.append("dispatch.max_attempts: must be at least 1")
    if config.dispatch.queue_per_modem < 1:
        problems.append("dispatch.queue_per_modem: must be at least 1")
    if not 0 < config.dispatch.retry_initial <= config.dispatch.retry_max:
        problems.append("dispatch.retry_initial: must be positive and at most retry_max")
    problems += _check_receive_side(config)
    problems += _check_smpp(config)
    problems += check_smtp(config.smtp, list(enumerate(s.smtp for s in config.services)))
    for index, service in enumerate(config.services):
        where = f"services[{index}]"
        for key, endpoint in (("mo", service.mo), ("dr", service.dr)):
            if endpoint is not None:
                problems += check_endpoint(f"{where}.{key}", endpoint)
        if service.mo_email is not None:
            problems += check_mo_email(f"{where}.mo_email", service.mo_email, config.smtp_relay)
    return problems


def _check_receive_side(config: Config) -> list[str]:
    """Inbound routing, pacing and report keys (issue 3)."""
    problems: list[str] = []
    service_ids = {service.id for service in config.services}
    for index, modem in enumerate(config.modems):
        where = f"modems[{index}]"
        if modem.service is not None and modem.service not in service_ids:
            problems.append(f"{where}.service: no service has id {modem.service}")
        for key in ("min_interval", "jitter", "hourly_cap", "daily_cap"):
            if getattr(modem, key) < 0:
                problems.append(f"{where}.{key}: must not be negative")
    keywords: dict[str, int] = {}
    for index, service in enumerate(config.services):
        for keyword in service.keywords:
            if not keyword or keyword.split() != [keyword]:
                problems.append(f"services[{index}].keywords: {keyword!r} is not one word")
                continue
            owner = keywords.setdefault(keyword.casefold(), service.id)
            if owner != service.id:
                problems.append(
                    f"services[{index}].keywords: {keyword!r} is also a keyword of service {owner}"
                )
    # A report comes after its send: within a window of 0 it matches no part, ever.
    if config.reports.window <= 0:
        problems.append("reports.window: must be positive")
    for key in ("grace", "rematch"):
        if getattr(config.reports, key) < 0:
            problems.append(f"reports.{key}: must not be negative")
    if config.inbound.reassembly_timeout <= 0:
        problems.append("inbound.reassembly_timeout: must be positive")
    if config.dispatch.failover_after < 0:
        problems.append("dispatch.failover_after: must not be negative")
    return problems


def _check_smpp(config: Config) -> list[str]:
    """SMPP accounts name existing services and have unique system_ids."""
    if config.smpp is None:
        return [
            f"services[{index}].mo_smpp: needs an [smpp] listener"
            for index, service in enumerate(config.services)
            if service.mo_smpp
        ]
    service_ids = {service.id for service in config.services}
    accounts = config.smpp.accounts
    problems = _duplicates("smpp.accounts", "system_id", [a.system_id for a in accounts])
    problems += [
        f"smpp.accounts[{index}].password: a plaintext bind password is at most 8 octets "
        "(SMPP 3.4); an `edgegw hash-password` hash may be longer"
        for index, account in enumerate(accounts)
        if not is_hashed(account.password) and len(account.password.encode()) > 8
    ]
    problems += [
        f"smpp.accounts[{index}].service: no service has id {account.service}"
        for index, account in enumerate(accounts)
        if account.service not in service_ids
    ]
    return problems


def _duplicates(section: str, key: str, values: list[Any]) -> list[str]:
    seen: set[Any] = set()
    problems = []
    for index, value in enumerate(values):
        if value in seen:
            problems.append(f"{section}[{index}].{key}: {value!r} is used twice")
        seen.add(value)
    return problems


def _resolve_paths(config: Config, folder: Path) -> Config:
    def resolve(value: str) -> str:
        return str(folder / value) if value else value

    gateway = msgspec.structs.replace(config.gateway, store=resolve(config.gateway.store))
    modems = [
        msgspec.structs.replace(
            modem,
            simulator=msgspec.structs.replace(
                modem.simulator,
                record=resolve(modem.simulator.record) if modem.simulator.record else None,
                link_dir=resolve(modem.simulator.link_dir) if modem.simulator.link_dir else None,
            ),
        )
        for modem in config.modems
    ]
    services = [
        msgspec.structs.replace(
            service,
            mo=_resolve_ca_file(service.mo, resolve),
            dr=_resolve_ca_file(service.dr, resolve),
        )
        for service in config.services
    ]
    smpp, smtp = config.smpp, config.smtp
    if smpp is not None:
        smpp = msgspec.structs.replace(
            smpp, tls_cert_file=resolve(smpp.tls_cert_file), tls_key_file=resolve(smpp.tls_key_file)
        )
    if smtp is not None:
        smtp = msgspec.structs.replace(
            smtp, tls_cert_file=resolve(smtp.tls_cert_file), tls_key_file=resolve(smtp.tls_key_file)
        )
    return msgspec.structs.replace(
        config, gateway=gateway, modems=modems, services=services, smpp=smpp, smtp=smtp
    )


def _resolve_ca_file(
    endpoint: CallbackEndpoint | None, resolve: Callable[[str], str]
) -> CallbackEndpoint | None:
    if endpoint is None or not endpoint.ca_file:
        return endpoint
    return msgspec.structs.replace(endpoint, ca_file=resolve(endpoint.ca_file))
