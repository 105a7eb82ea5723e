"""A customer's usage as the store holds it: the interval channels of one meter over a range of its local days.

The intervals come from the contract views: ``amiflow.v_readings`` (what the meter sent) overlaid by
``amiflow.v_vee_intervals`` (what VEE estimated or edited, the values the bill used), so an estimated interval carries
its value and the ``estimated`` flag. An interval that is missing and was never estimated is absent (a gap).

A range is given as local dates of the meter's time zone, ``start`` inclusive and ``end`` exclusive: the intervals
ending in (local midnight of ``start``, local midnight of ``end``]. Bad input is a :class:`~amiflow.errors.ConfigError`
naming it; :class:`UsageNotFound` (a ConfigError) when the meter or its data is not there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
import psycopg

from amiflow.db.registry import get_meter
from amiflow.errors import ConfigError
from amiflow.types import QualityFlag
from rating.local_time import local_midnight_ts

__all__ = [
    "ELECTRICITY",
    "EXPORT_OBIS",
    "GAS",
    "HEAT",
    "IMPORT_OBIS",
    "METHODS",
    "SERVICES",
    "WATER",
    "Channel",
    "MeterInfo",
    "MeterUsage",
    "Service",
    "UsageNotFound",
    "account_known",
    "check_year",
    "find_meter",
    "load_channels",
    "parse_day",
    "parse_month",
    "read_usage",
]

IMPORT_OBIS = "1-0:1.29.0"
EXPORT_OBIS = "1-0:2.29.0"


@dataclass(frozen=True, slots=True)
class Service:
    """What a meter measures, as ESPI names it: ``kind`` (ServiceKind), ``commodity`` (CommodityKind),
    ``measurement`` (MeasurementKind) and ``uom`` (UnitSymbolKind) of its readings in the store's base ``unit``, and
    its interval channels (OBIS code -> flow)."""

    name: str
    kind: int
    commodity: int
    measurement: int
    uom: int
    unit: str
    flows: tuple[tuple[str, Literal["import", "export"]], ...]

    @property
    def obis(self) -> list[str]:
        return [code for code, _flow in self.flows]


ELECTRICITY = Service("electricity", 0, 1, 12, 72, "Wh", ((IMPORT_OBIS, "import"), (EXPORT_OBIS, "export")))
#: heat meters (M-Bus 6-0:1.29.0, Wh), water (8-0:1.29.0) and gas (7-0:3.29.0) in m3: the poller's derived intervals
HEAT = Service("heat", 4, 12, 12, 72, "Wh", (("6-0:1.29.0", "import"),))
WATER = Service("water", 2, 9, 58, 42, "m3", (("8-0:1.29.0", "import"),))
GAS = Service("gas", 1, 7, 58, 42, "m3", (("7-0:3.29.0", "import"),))
#: in the order a meter's service is looked for: the first one with intervals in the range is the meter's
SERVICES = (ELECTRICITY, HEAT, WATER, GAS)
#: VEE estimation methods (``v_vee_intervals.method``) by code; 0 = not estimated
METHODS = ("none", "interpolated", "like_day", "profile", "mean", "outage")

I64 = npt.NDArray[np.int64]
_METER_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # amiflow.meters.name's CHECK
_BITS = {flag.name.lower(): int(flag) for flag in QualityFlag if flag.name}


class UsageNotFound(ConfigError):
    """The meter, the account or the meter's intervals are not there (the HTTP API answers 404)."""


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """The registry facts a usage export needs."""

    meter: str
    account: str | None
    timezone: str
    tariff: str | None

    @property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"meter {self.meter}: unknown time zone {self.timezone!r} in the registry") from None


@dataclass(frozen=True, slots=True)
class Channel:
    """One interval channel: ends ``ts`` (UTC epoch s, ascending), energy ``wh``, QualityFlag bits, VEE method.
    (``wh`` holds the service's base unit: Wh of electricity and heat, m3 of water and gas.)"""

    obis: str
    flow: Literal["import", "export"]
    ts: I64
    wh: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int32]
    method: npt.NDArray[np.int8]  # index into METHODS
    interval_s: int
    validated: bool  # VEE ran on every month of the range

    @property
    def total_wh(self) -> float:
        return float(self.wh.sum())


@dataclass(frozen=True, slots=True)
class MeterUsage:
    """A meter's channels over the local days [start, end): import first, export when the meter has it."""

    meter: MeterInfo
    start: date
    end: date  # exclusive
    start_ts: int  # local midnight of start, UTC epoch s
    end_ts: int
    channels: tuple[Channel, ...]
    service: Service = ELECTRICITY

    def channel(self, flow: str) -> Channel | None:
        return next((c for c in self.channels if c.flow == flow), None)


def parse_day(text: str, option: str) -> date:
    """``YYYY-MM-DD`` as a date; ConfigError naming the option otherwise."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a date (YYYY-MM-DD)") from None


def parse_month(text: str, option: str = "--period") -> date:
    """``YYYY-MM`` as the first day of that month; ConfigError naming the option otherwise."""
    try:
        return datetime.strptime(text.strip(), "%Y-%m").date()
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a month (YYYY-MM)") from None


def check_year(day: date) -> None:
    """ConfigError for a day outside the years metering data can have (1900-9998): a typo, not a request."""
    if not 1900 <= day.year <= 9998:
        raise ConfigError(f"{day} is outside the years 1900-9998")


def find_meter(conn: psycopg.Connection[Any], meter: str, *, account: str | None = None) -> MeterInfo:
    """The registered meter (of ``account`` when given); UsageNotFound naming what is unknown."""
    if account is not None and not account_known(conn, account):
        raise UsageNotFound(f"unknown account {account!r}")
    record = get_meter(conn, meter) if _METER_NAME.fullmatch(meter) else None
    if record is None or (account is not None and record.account != account):
        where = f" of account {account!r}" if account is not None else " (see 'amiflow meters list')"
        raise UsageNotFound(f"unknown meter {meter!r}{where}")
    return MeterInfo(record.name, record.account, record.timezone, record.tariff)


def account_known(conn: psycopg.Connection[Any], account: str) -> bool:
    """True when a meter of the registry or the billing system's accounts name ``account``."""
    if not 1 <= len(account) <= 128 or "\x00" in account:
        return False  # what amiflow.accounts can hold (and PostgreSQL text cannot hold NUL)
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM amiflow.meters WHERE account = %(a)s)"
        " OR EXISTS (SELECT 1 FROM amiflow.accounts WHERE account = %(a)s)",
        {"a": account},
    ).fetchone()
    return bool(row and row[0])


_QUERY = """
WITH r AS (SELECT obis, ts, value, quality FROM amiflow.v_readings
           WHERE meter = %(m)s AND obis = ANY(%(obis)s) AND ts > %(lo)s AND ts <= %(hi)s),
     v AS (SELECT obis, ts, post_value, quality, method FROM amiflow.v_vee_intervals
           WHERE meter = %(m)s AND obis = ANY(%(obis)s) AND ts > %(lo)s AND ts <= %(hi)s)
SELECT coalesce(r.obis, v.obis), extract(epoch FROM coalesce(r.ts, v.ts))::bigint,
       coalesce(v.post_value, r.value), coalesce(v.quality, r.quality), coalesce(v.method, 'none')
FROM r FULL JOIN v ON v.obis = r.obis AND v.ts = r.ts
WHERE coalesce(v.post_value, r.value) IS NOT NULL
ORDER BY 1, 2
"""


def load_channels(
    conn: psycopg.Connection[Any],
    meter: MeterInfo,
    start: date,
    end: date,
    *,
    services: tuple[Service, ...] = (ELECTRICITY,),
) -> MeterUsage:
    """The import and export intervals of the local days [start, end); channels without data are left out. Of
    ``services`` (default electricity only: bill documents, insights and advice speak kWh) the first with intervals
    in the range is the meter's."""
    zone = meter.zone
    lo, hi = local_midnight_ts(start, zone), local_midnight_ts(end, zone)
    params = {
        "m": meter.meter,
        "obis": _channels_of(services),
        "lo": datetime.fromtimestamp(lo, UTC),
        "hi": datetime.fromtimestamp(hi, UTC),
    }
    rows = conn.execute(_QUERY, params).fetchall()
    found = {r[0] for r in rows}
    service = next((sv for sv in services if found & set(sv.obis)), services[0])
    validated = _validated_channels(conn, meter.meter, start, end)
    channels = []
    for obis, flow in service.flows:
        mine = [r for r in rows if r[0] == obis]
        if not mine:
            continue
        ts = np.array([r[1] for r in mine], dtype=np.int64)
        channels.append(
            Channel(
                obis=obis,
                flow=flow,
                ts=ts,
                wh=np.array([r[2] for r in mine], dtype=np.float64),
                quality=np.array([_bits(r[3]) for r in mine], dtype=np.int32),
                method=np.array([_method(r[4]) for r in mine], dtype=np.int8),
                interval_s=_interval_s(ts),
                validated=obis in validated,
            )
        )
    return MeterUsage(meter, start, end, lo, hi, tuple(channels), service)


def _channels_of(services: tuple[Service, ...]) -> list[str]:
    """The interval channels (OBIS codes) of ``services``."""
    return [code for service in services for code in service.obis]


def read_usage(
    conn: psycopg.Connection[Any],
    meter: str,
    start: date,
    end: date,
    *,
    account: str | None = None,
    services: tuple[Service, ...] = (ELECTRICITY,),
) -> MeterUsage:
    """Like :func:`load_channels` for a meter named by the user: a one-line error for every kind of bad input.

    ConfigError when ``start`` is not before ``end``; UsageNotFound for an unknown meter (or one not of
    ``account``), a meter without any interval, and a range holding none of its intervals.
    """
    if start >= end:
        raise ConfigError(f"the period {start}..{end} is empty: --from must be before --to (--to is exclusive)")
    check_year(start)
    check_year(end)
    info = find_meter(conn, meter, account=account)
    usage = load_channels(conn, info, start, end, services=services)
    if not usage.channels:
        span = conn.execute(
            "SELECT min(ts), max(ts) FROM amiflow.v_readings WHERE meter = %s AND obis = ANY(%s)",
            (meter, _channels_of(services)),
        ).fetchone()
        if span is None or span[0] is None:
            raise UsageNotFound(f"meter {meter!r} has no interval readings stored")
        first, last = (t.astimezone(info.zone).date() for t in span)
        raise UsageNotFound(
            f"meter {meter!r} has no intervals in {start}..{end} (exclusive end); its intervals span {first}..{last}"
        )
    return usage


def _validated_channels(conn: psycopg.Connection[Any], meter: str, start: date, end: date) -> set[str]:
    """The channels VEE validated for every month the range touches."""
    months = (end.year - start.year) * 12 + end.month - start.month + (end.day > 1)
    rows = conn.execute(
        "SELECT c.obis, count(DISTINCT vr.period_start) FROM amiflow.vee_results vr"
        " JOIN amiflow.meters m ON m.id = vr.meter_id JOIN amiflow.channels c ON c.id = vr.channel_id"
        " WHERE m.name = %s AND vr.period_start >= %s AND vr.period_start < %s AND vr.hold IS NULL GROUP BY c.obis",
        (meter, start.replace(day=1), end),
    ).fetchall()
    return {obis for obis, n in rows if n >= months}


def _bits(names: list[str] | None) -> int:
    return sum(_BITS.get(n, 0) for n in names or ())


def _method(name: str) -> int:
    return METHODS.index(name) if name in METHODS else 0


def _interval_s(ts: I64) -> int:
    """The channel's interval length: the commonest step between stored intervals.

    Not the smallest: gaps make longer steps, and a meter whose clock is off sends some intervals off the grid
    (kept as they were stored), which make shorter ones.
    """
    steps, counts = np.unique(np.diff(ts), return_counts=True)
    keep = (steps > 0) & (steps <= 86400)
    if not keep.any():
        return 900
    return int(steps[keep][np.argmax(counts[keep])])
