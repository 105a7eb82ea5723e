"""Prepaid (cost control) accounts: a running balance from the intervals as they arrive, low-balance notices, and a
disconnect at zero that goes through the same policy as any other.

Balance = opening credit + every payment (top-ups; reversals are negative) - the cost of the energy consumed.
The cost is rated by the tariff of each meter (``amiflow.meters.tariff``) with the same engine as the monthly bill:
TOU periods, tiers, demand, export credits, fixed charges by day and taxes, drawn down as the month goes
(:mod:`billing_bridge.prepaid_rating`). Only a meter without a tariff is charged the account's flat
``rate_per_kwh`` per import kWh (``1-0:1.29.0``); a caller may pass ``rate_fn`` with per-interval rates for every
meter instead. A meter whose tariff cannot rate the month (not stored, a change inside the month, another currency)
leaves its account uncharged in that run, with the reason in the update (``error``) and the log. Intervals are
charged once, in time order: each update charges the intervals up to the first one still missing for any of the
account's meters, except that a gap older than ``gap_grace_s`` (default 24 h) is skipped (the monthly bill with VEE
settles it) so one lost interval cannot freeze the balance.

Low-balance notices (``low_balance``, with the threshold) go once per threshold per cycle; a top-up that lifts the
balance above the highest threshold starts a new cycle. At zero the account becomes a disconnect case (prepaid rules
of the rule set: the low_balance notice must have been sent and the balance must have been at zero for
``notice_period_hours``), decided by :func:`billing_bridge.disconnect_plan.plan_disconnects`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.types.json import Jsonb

from amiflow.db.outbox import enqueue
from amiflow.db.reader import read_intervals
from amiflow.errors import RatingError
from billing_bridge.policy import RuleSet
from billing_bridge.prepaid_rating import tariff_cost

__all__ = [
    "PrepaidPosition",
    "PrepaidUpdate",
    "crossed_thresholds",
    "enroll",
    "interval_cost",
    "prepaid_positions",
    "update_prepaid",
]

log = logging.getLogger(__name__)
_CENT4 = Decimal("0.0001")
RateFn = Callable[[str, npt.NDArray[np.int64]], npt.NDArray[np.float64]]


@dataclass(frozen=True, slots=True)
class PrepaidPosition:
    """A prepaid account's state; ``notice_ref`` keys its low-balance notices for the current cycle."""

    account: str
    currency: str
    balance: Decimal
    consumed_through: datetime
    rate_per_kwh: Decimal
    zero_since: datetime | None
    cycle_started_at: datetime

    @property
    def notice_ref(self) -> str:
        return f"prepaid:{self.account}:{self.cycle_started_at.astimezone(UTC).isoformat()}"


@dataclass(frozen=True, slots=True)
class PrepaidUpdate:
    """What one update did to one account."""

    account: str
    intervals_charged: int
    cost: Decimal
    balance: Decimal
    notices: tuple[str, ...]
    error: str | None = None


def interval_cost(energy_wh: npt.NDArray[np.float64], rate_per_kwh: float | npt.NDArray[np.float64]) -> Decimal:
    """Cost of intervals (meters x intervals, NaN = missing counts 0) at a flat or per-interval rate, to 1e-4."""
    kwh = np.nan_to_num(np.clip(energy_wh, 0, None), nan=0.0) / 1000.0
    total = float(np.sum(kwh * rate_per_kwh))
    return Decimal(repr(total)).quantize(_CENT4, ROUND_HALF_UP)


def crossed_thresholds(before: Decimal, after: Decimal, thresholds: Sequence[Decimal]) -> list[Decimal]:
    """Thresholds reached by a fall from ``before`` to ``after`` (before > t >= after), highest first."""
    return sorted((t for t in thresholds if before > t >= after), reverse=True)


def enroll(
    conn: psycopg.Connection[Any],
    account: str,
    *,
    currency: str,
    rate_per_kwh: Decimal,
    opening_credit: Decimal,
    start: datetime,
) -> None:
    """Make ``account`` prepaid from ``start`` (intervals ending after it are charged); ``rate_per_kwh`` is charged
    only for its meters without a tariff (the others are rated by their tariff)."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO amiflow.account_policy (account, prepaid) VALUES (%s, true)"
            " ON CONFLICT (account) DO UPDATE SET prepaid = true, updated_at = now()",
            (account,),
        )
        conn.execute(
            "INSERT INTO amiflow.prepaid_accounts (account, currency, opening_credit, consumed_through, rate_per_kwh,"
            " last_balance, cycle_started_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (account) DO UPDATE SET rate_per_kwh = EXCLUDED.rate_per_kwh, updated_at = now()",
            (account, currency, opening_credit, start, rate_per_kwh, opening_credit, start),
        )


_POSITIONS = """
SELECT p.account, p.currency,
       p.opening_credit + coalesce((SELECT sum(amount) FROM amiflow.payments y WHERE y.account = p.account), 0)
           - p.consumed_cost,
       p.consumed_through, p.rate_per_kwh, p.zero_since, p.cycle_started_at, p.last_balance
FROM amiflow.prepaid_accounts p
"""


def prepaid_positions(conn: psycopg.Connection[Any]) -> list[PrepaidPosition]:
    """Every prepaid account with its balance as of the last charged interval and the payments received so far."""
    rows = conn.execute(_POSITIONS + " ORDER BY p.account").fetchall()
    return [PrepaidPosition(a, c.strip(), Decimal(b), t, Decimal(r), z, cy) for a, c, b, t, r, z, cy, _ in rows]


def _chargeable(present: npt.NDArray[np.bool_], ts: npt.NDArray[np.int64], grace_ts: int) -> int:
    """How many leading intervals may be charged: up to the first missing one, but gaps before grace_ts are skipped."""
    complete = present.all(axis=0)
    missing = np.flatnonzero(~complete & (ts > grace_ts))
    return int(missing[0]) if missing.size else int(ts.size)


def update_prepaid(
    conn: psycopg.Connection[Any],
    ruleset: RuleSet,
    *,
    now: datetime,
    interval_s: int = 900,
    gap_grace_s: int = 86_400,
    rate_fn: RateFn | None = None,
) -> list[PrepaidUpdate]:
    """Charge the new intervals of every prepaid account, update its balance and queue low-balance notices."""
    meters: dict[str, list[tuple[str, str | None, str]]] = {}
    for name, account, tariff, tz in conn.execute(
        "SELECT name, account, tariff, timezone FROM amiflow.meters WHERE account IS NOT NULL ORDER BY name"
    ):
        meters.setdefault(account, []).append((name, tariff, tz))
    end_ts = int(now.timestamp()) // interval_s * interval_s
    out = []
    for account, *_ in conn.execute("SELECT account FROM amiflow.prepaid_accounts ORDER BY account").fetchall():
        with conn.transaction():
            out.append(
                _update_one(
                    conn, ruleset, account, meters.get(account, []), now, end_ts, interval_s, gap_grace_s, rate_fn
                )
            )
    return out


def _cost(
    conn: psycopg.Connection[Any],
    meters: list[tuple[str, str | None, str]],
    m: Any,
    n: int,
    flat: Decimal,
    currency: str,
    rate: npt.NDArray[np.float64] | None,
) -> Decimal:
    """The cost of the first ``n`` intervals of ``m`` (the meters' matrix): by tariff, or flat where there is none."""
    if rate is not None:
        return interval_cost(m.values[:, :n], rate)
    since = datetime.fromtimestamp(int(m.ts[0]) - m.interval_s, UTC)
    upto = datetime.fromtimestamp(int(m.ts[n - 1]), UTC)
    groups: dict[tuple[str, str], list[str]] = {}
    for name, tariff, tz in meters:
        if tariff is not None:
            groups.setdefault((tariff, tz), []).append(name)
    untariffed = [i for i, (_, tariff, _) in enumerate(meters) if tariff is None]
    cost = interval_cost(m.values[untariffed, :n], float(flat)) if untariffed else Decimal(0)
    for (tariff, tz), names in sorted(groups.items()):
        cost += tariff_cost(conn, tariff, tz, names, since, upto, currency=currency, interval_s=m.interval_s)
    return cost.quantize(_CENT4, ROUND_HALF_UP)


def _update_one(
    conn: psycopg.Connection[Any],
    rs: RuleSet,
    account: str,
    meters: list[tuple[str, str | None, str]],
    now: datetime,
    end_ts: int,
    interval_s: int,
    gap_grace_s: int,
    rate_fn: RateFn | None,
) -> PrepaidUpdate:
    row = conn.execute(_POSITIONS + " WHERE p.account = %s FOR UPDATE OF p", (account,)).fetchone()
    assert row is not None
    _, currency, balance, through, rate, zero_since, cycle, last_balance = row
    balance, rate = Decimal(balance), Decimal(rate)
    start_ts = int(through.timestamp())
    n_charged, cost, error = 0, Decimal(0), None
    names = [name for name, _, _ in meters]
    if names and end_ts > start_ts and (end_ts - start_ts) % interval_s == 0:
        m = read_intervals(conn, names, "1-0:1.29.0", through, datetime.fromtimestamp(end_ts, UTC), interval_s)
        n_charged = _chargeable(m.present, m.ts, end_ts - gap_grace_s)
        if n_charged:
            rates = rate_fn(account, m.ts[:n_charged]) if rate_fn else None
            try:
                cost = _cost(conn, meters, m, n_charged, rate, currency.strip(), rates)
                through = datetime.fromtimestamp(int(m.ts[n_charged - 1]), UTC)
            except RatingError as exc:
                log.warning("prepaid account %s not charged: %s", account, exc)
                n_charged, cost, error = 0, Decimal(0), str(exc)
    new_balance = balance - cost
    top = max(rs.prepaid_low_balance, default=Decimal(0))
    previous = Decimal(last_balance) if last_balance is not None else new_balance
    if previous <= top < new_balance:
        cycle = now  # a top-up lifted the balance above every threshold: notices may go again
    if new_balance > 0:
        zero_since = None
    elif zero_since is None:
        zero_since = through if n_charged else now
    conn.execute(
        "UPDATE amiflow.prepaid_accounts SET consumed_cost = consumed_cost + %s, consumed_through = %s,"
        " last_balance = %s, zero_since = %s, cycle_started_at = %s, updated_at = now() WHERE account = %s",
        (cost, through, new_balance, zero_since, cycle, account),
    )
    position = PrepaidPosition(account, currency.strip(), new_balance, through, rate, zero_since, cycle)
    notices = _low_balance_notices(conn, rs, position, now)
    return PrepaidUpdate(account, n_charged, cost, new_balance, notices, error)


def _low_balance_notices(
    conn: psycopg.Connection[Any], rs: RuleSet, p: PrepaidPosition, now: datetime
) -> tuple[str, ...]:
    sent = []
    for t in sorted((t for t in rs.prepaid_low_balance if p.balance <= t), reverse=True):
        ntype = f"low_balance@{t}"
        key = f"notice:low_balance:{p.account}:{t}:{p.cycle_started_at.astimezone(UTC).isoformat()}"
        payload = {
            "type": "low_balance",
            "account": p.account,
            "threshold": str(t),
            "balance": str(p.balance.quantize(Decimal("0.01"), ROUND_HALF_UP)),
            "currency": p.currency,
            "as_of": p.consumed_through.isoformat(),
            "sent_at": now.isoformat(),
            "ruleset": {"id": rs.id, "version": rs.version},
        }
        row = conn.execute(
            "INSERT INTO amiflow.notices (account, debt_ref, type, sent_at, outbox_key, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
            (p.account, p.notice_ref, ntype, now, key, Jsonb(payload)),
        ).fetchone()
        if row is not None:
            enqueue(conn, kind="notice", idempotency_key=key, payload=payload, account=p.account)
            sent.append(str(t))
    return tuple(sent)
