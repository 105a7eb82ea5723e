"""The dashboard's figures as they go over the wire (``GET /dashboard/figures`` and each ``/dashboard/events``
message). Money is a decimal string with two places, never a float; times are aware UTC datetimes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ArrearsBand",
    "ArrearsFigure",
    "ArrearsInCurrency",
    "BillsFigure",
    "BlockedDisconnect",
    "DisconnectsFigure",
    "Figures",
    "Money",
    "PaymentsFigure",
    "PendingDisconnect",
    "QuarantineFigure",
    "QuarantineReason",
    "ReadingsFigure",
    "SilentFigure",
    "SilentMeter",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Money(_Frozen):
    currency: str
    amount: str = Field(description="decimal string, two places")


class ReadingsFigure(_Frozen):
    last_minute: int = Field(description="readings stored in the last 60 s")
    per_minute: list[int] = Field(description="readings stored per minute, the newest minute first")
    lookback_s: int = Field(description="only intervals ending within this many seconds before now are counted")


class QuarantineReason(_Frozen):
    reason: str
    last_24h: int
    total: int
    last_at: datetime | None


class QuarantineFigure(_Frozen):
    last_24h: int
    total: int
    by_reason: list[QuarantineReason]


class SilentMeter(_Frozen):
    meter: str
    protocol: str
    last_seen_at: datetime | None = Field(description="null: never heard from")


class SilentFigure(_Frozen):
    count: int = Field(description="active meters with no reading for `intervals` intervals")
    never_seen: int
    active: int
    intervals: int
    interval_s: int
    meters: list[SilentMeter] = Field(description="the longest silent first, at most the list limit")


class BillsFigure(_Frozen):
    month: date | None = Field(description="first day of the newest month with issued bills")
    issued: int = Field(description="issued bills of that month (latest versions)")
    totals: list[Money]
    issued_today: int = Field(description="bill versions issued since local midnight")
    outbox: dict[str, int] = Field(description="bills in the outbox by state: pending, delivered, rejected")


class PaymentsFigure(_Frozen):
    day: date = Field(description="the local day (the rule set's time zone)")
    count: int = Field(description="payments received that day (reversals included)")
    totals: list[Money]


class ArrearsBand(_Frozen):
    band: str = Field(description="days past due: 0-30, 31-60, 61-90, >90")
    amount: str = Field(description="overdue amount in the band, each debt aged by its own due date")
    accounts: int = Field(description="accounts whose oldest overdue debt is in the band")


class ArrearsInCurrency(_Frozen):
    currency: str
    total: str
    accounts: int
    bands: list[ArrearsBand]


class ArrearsFigure(_Frozen):
    as_of: date
    computed_at: datetime
    by_currency: list[ArrearsInCurrency]


class PendingDisconnect(_Frozen):
    meter: str
    account: str | None
    state: Literal["pending", "sent", "escalated"]
    attempts: int
    created_at: datetime
    last_error: str | None


class BlockedDisconnect(_Frozen):
    account: str
    meter: str | None
    rules: list[str] = Field(description="the rules that blocked the disconnect")
    detail: list[str] = Field(description="what each blocking rule said")
    ruleset: str
    decided_at: datetime


class DisconnectsFigure(_Frozen):
    pending: int = Field(description="disconnect commands pending or sent")
    escalated: int = Field(description="disconnect commands that ran out of retries: an operator must act")
    commands: list[PendingDisconnect]
    blocked: int = Field(description="accounts still overdue whose latest policy decision blocked the disconnect")
    blocked_by_rule: dict[str, int]
    decisions: list[BlockedDisconnect]


class Figures(_Frozen):
    type: Literal["figures"] = "figures"
    at: datetime
    readings: ReadingsFigure
    quarantine: QuarantineFigure
    silent: SilentFigure
    bills: BillsFigure
    payments: PaymentsFigure
    arrears: ArrearsFigure
    disconnects: DisconnectsFigure
