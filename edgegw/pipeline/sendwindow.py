"""Send windows: parse a request's `sendWindow` and tell when a daily window is next open.

Pure: no I/O and no clock (the time is a parameter). Spec section 7.5: dates and times without a
zone are Europe/Oslo local time; a missing startTime is 00:00:00.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo

import msgspec

from edgegw.model import DailyWindow, SendWindow

DEFAULT_ZONE = "Europe/Oslo"
END_OF_DAY = 86_400

# An xsd:date or xsd:time zone: Z, or an offset from -14:00 to +14:00.
_ZONE = r"(Z|[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00))"
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})" + _ZONE + "?")
_TIME = re.compile(r"(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?" + _ZONE + "?")


class SendWindowError(ValueError):
    """A sendWindow field is malformed; `field` names it as the response should."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"sendWindow.{field}: {reason}")
        self.field = field


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """When a message may first be sent, when its window closes for good, and the daily window
    it must also respect (None when the window is one continuous span)."""

    not_before: float
    ends_at: float | None
    daily: DailyWindow | None


def zone_info(zone: str) -> datetime.tzinfo:
    """An IANA zone name, or a fixed offset written "Z" or "+hh:mm"."""
    if zone == "Z":
        return datetime.UTC
    if zone[0] in "+-":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        offset = datetime.timedelta(hours=hours, minutes=minutes)
        return datetime.timezone(-offset if zone[0] == "-" else offset)
    return zoneinfo.ZoneInfo(zone)


def local_epoch(day: datetime.date, seconds: int, zone: datetime.tzinfo) -> float:
    """Epoch seconds of `seconds` after local midnight of `day` (24:00 is the next midnight)."""
    if seconds >= END_OF_DAY:
        # The second after 23:59:59, which exists on 9999-12-31 too, where the next date does
        # not (a stopDate meaning "never"); no zone edgegw reads changes its offset at midnight.
        return local_epoch(day, END_OF_DAY - 1, zone) + seconds - END_OF_DAY + 1
    hours, rest = divmod(seconds, 3600)
    return datetime.datetime(
        day.year, day.month, day.day, hours, rest // 60, rest % 60, tzinfo=zone
    ).timestamp()


def _date(field: str, value: str) -> tuple[datetime.date, str | None]:
    match = _DATE.fullmatch(value.strip())
    if match is None:
        raise SendWindowError(field, f"{value!r} is not a date (YYYY-MM-DD)")
    try:
        day = datetime.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise SendWindowError(field, f"{value!r} is not a valid date") from None
    return day, match[4]


def _time(field: str, value: str) -> tuple[int, str | None]:
    match = _TIME.fullmatch(value.strip())
    if match is None:
        raise SendWindowError(field, f"{value!r} is not a time (hh:mm:ss)")
    hours, minutes, seconds = int(match[1]), int(match[2]), int(match[3])
    if hours > 23 or minutes > 59 or seconds > 59:
        raise SendWindowError(field, f"{value!r} is not a valid time")
    return hours * 3600 + minutes * 60 + seconds, match[4]


def parse_send_window(window: SendWindow) -> Schedule:
    """The schedule a `sendWindow` asks for.

    With a stopDate after the startDate and a stopTime after the startTime the window opens
    daily from startTime to stopTime. Otherwise it is one span from start to stop; a missing
    stopTime ends it at midnight after stopDate, a missing stopDate ends it on startDate, and no
    stop fields at all leave it open.
    """
    if not window.startDate:
        raise SendWindowError("startDate", "is required")
    start_day, start_day_zone = _date("startDate", window.startDate)
    opens, opens_zone = _time("startTime", window.startTime) if window.startTime else (0, None)
    stop_day, stop_day_zone = (
        _date("stopDate", window.stopDate) if window.stopDate else (None, None)
    )
    closes, closes_zone = _time("stopTime", window.stopTime) if window.stopTime else (None, None)
    zone_name = opens_zone or start_day_zone or closes_zone or stop_day_zone or DEFAULT_ZONE
    zone = zone_info(zone_name)
    not_before = local_epoch(start_day, opens, zone)
    if stop_day is None and closes is None:
        return Schedule(not_before=not_before, ends_at=None, daily=None)
    last_day = start_day if stop_day is None else stop_day
    if last_day < start_day:
        raise SendWindowError("stopDate", "is before startDate")
    ends_at = local_epoch(last_day, END_OF_DAY if closes is None else closes, zone)
    if ends_at <= not_before:
        raise SendWindowError("stopTime", "the window closes before it opens")
    daily = None
    if closes is not None and last_day > start_day and closes > opens:
        daily = DailyWindow(
            zone=zone_name,
            first_day=start_day.isoformat(),
            last_day=last_day.isoformat(),
            opens=opens,
            closes=closes,
        )
    return Schedule(not_before=not_before, ends_at=ends_at, daily=daily)


def next_open(window: DailyWindow, now: float) -> float | None:
    """`now` if the daily window is open, else when it next opens; None once it never will."""
    zone = zone_info(window.zone)
    first = datetime.date.fromisoformat(window.first_day)
    last = datetime.date.fromisoformat(window.last_day)
    day = max(datetime.datetime.fromtimestamp(now, zone).date(), first)
    while day <= last:
        opening = local_epoch(day, window.opens, zone)
        if now < opening:
            return opening
        if now < local_epoch(day, window.closes, zone):
            return now
        day += datetime.timedelta(days=1)
    return None


def first_opening(schedule: Schedule, now: float) -> float:
    """When a message with this schedule, accepted at `now`, may first be sent: its validity
    runs from then. A daily window that never opens again gives `now` (it ends before that)."""
    start = max(now, schedule.not_before)
    if schedule.daily is None:
        return start
    opening = next_open(schedule.daily, start)
    return start if opening is None else opening
