"""How the Java platform writes and reads values: Gson, ``Double.toString``,
``SimpleDateFormat`` and ``Integer.parseInt``, quirks included.

Restcomm is a Java server; a wire format for it renders through these.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

_INT_RE = re.compile(r"[+-]?[0-9]+")
_DATE_PREFIX_RE = re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_GSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "=": "\\u003d",
    "'": "\\u0027",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GSON_ESCAPE_RE = re.compile("[<>&='\u2028\u2029]")


def gson_dumps(obj: Any) -> str:
    """Serialize like ``new GsonBuilder().setPrettyPrinting().create().toJson(...)``.

    Two-space indentation, ``"key": value``, raw non-ASCII, and Gson's default HTML-safe
    escaping of ``< > & = '`` (and U+2028/U+2029) as ``\\uXXXX``.
    """
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    # These characters never occur in JSON syntax outside strings, so a global replace
    # only touches string contents.
    return _GSON_ESCAPE_RE.sub(lambda m: _GSON_ESCAPES[m.group(0)], text)


def java_double(value: float) -> str:
    """``Double.toString``: ``2.0``, ``14.70275``, ``1.0E7``, ``1.0E-4``."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if str(value).startswith("-") else "0.0"
    if 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        if "e" in text or "E" in text:  # pragma: no cover - repr is decimal in this range
            text = f"{value:f}"
        return text if "." in text else text + ".0"
    for precision in range(17):
        text = f"{value:.{precision}e}"
        if float(text) == value:
            break
    mantissa, exponent = text.split("e")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}E{int(exponent)}"


def format_java_date(when: datetime, tz: tzinfo) -> str:
    """``SimpleDateFormat("EEE, d MMM yyyy HH:mm:ss Z", Locale.US)`` in ``tz``."""
    local = when.astimezone(tz)
    offset = local.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return (
        f"{_DAYS[local.weekday()]}, {local.day} {_MONTHS[local.month - 1]} {local.year:04d} "
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d} "
        f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
    )


def parse_java_date_prefix(text: str) -> date | None:
    """Lenient ``SimpleDateFormat("yyyy-MM-dd").parse``: prefix only, fields roll over.

    Returns None where Java throws ``ParseException``.
    """
    match = _DATE_PREFIX_RE.match(text)
    if match is None:
        return None
    year, month, day = (int(g) for g in match.groups())
    # Lenient calendar: month 13 -> January next year, day 40 -> rolls into next month.
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    try:
        return date(year, month, 1) + timedelta(days=day - 1)
    except (ValueError, OverflowError):
        return None


def java_int(text: str) -> int | None:
    """``Integer.parseInt``; None where Java throws ``NumberFormatException``."""
    if _INT_RE.fullmatch(text) is None:
        return None
    value = int(text)
    return value if -(2**31) <= value < 2**31 else None
