"""Inbound routing: which service an MO belongs to, by keyword first and then by the modem.

Pure: no I/O, no clock. Fills the spec's MO fields `command` and `strippedcontent` (section 3.1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec


class KeywordRule(msgspec.Struct, frozen=True, kw_only=True):
    """Inbound starting with `keyword` goes to `service_id`, if it came in on one of `modems`
    (empty: on any modem)."""

    keyword: str
    service_id: int
    modems: tuple[str, ...] = ()


class Route(msgspec.Struct, frozen=True, kw_only=True):
    service_id: int | None  # None: no keyword matched and the modem names no service
    command: str  # the matched keyword as configured, "" when none matched
    stripped_content: str  # the content without the keyword and the blanks after it


class InboundRouter:
    """Keyword rules take precedence over the receiving modem's own service."""

    def __init__(self, modem_services: Mapping[str, int | None], rules: Sequence[KeywordRule]):
        self._modem_services = dict(modem_services)
        self._rules: dict[str, list[KeywordRule]] = {}
        for rule in rules:
            self._rules.setdefault(rule.keyword.casefold(), []).append(rule)

    def route(self, modem: str, content: str, *, has_start: bool = True) -> Route:
        """`has_start` False: the content lacks the message's first part, so its first word is
        no keyword the sender typed, and only the modem decides."""
        words = content.split(maxsplit=1) if has_start else []
        if words:
            for rule in self._rules.get(words[0].casefold(), ()):
                if not rule.modems or modem in rule.modems:
                    rest = words[1] if len(words) > 1 else ""
                    return Route(
                        service_id=rule.service_id, command=rule.keyword, stripped_content=rest
                    )
        return Route(
            service_id=self._modem_services.get(modem), command="", stripped_content=content
        )
