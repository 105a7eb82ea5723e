"""ISO 11649 structured creditor references ("RF references") for bill payments.

A reference is ``RF``, two check digits and 1-21 characters ``A-Z0-9``. The check digits are ISO 7064 MOD 97-10, as
in an IBAN: move ``RF00`` behind the reference, read letters as numbers (A = 10 ... Z = 35), take the remainder by
97, and the check digits are 98 minus it; a reference is valid when the same reading (with its check digits) leaves 1.
Printed in groups of four (``RF18 5390 0754 7034``); a payer's bank checks the digits, so a mistyped reference is
refused before the money moves.

A bill's reference is its account's letters and digits (up to 11), the period ``YYYYMM`` and four characters of a
hash of the bill id, so two bills of one account in one month (a move-in, a tariff change) differ, and it stays the
same for every version of the bill: a payment made against version 1 still matches a revised version 2.
"""

from __future__ import annotations

import hashlib
import re
import string
from datetime import date

__all__ = ["bill_reference", "format_reference", "rf_check_digits", "rf_reference", "rf_valid"]

_BASE = re.compile(r"[A-Z0-9]{1,21}")
_DIGITS = {c: str(i) for i, c in enumerate(string.digits + string.ascii_uppercase)}
_B36 = string.digits + string.ascii_uppercase


def _number(text: str) -> int:
    return int("".join(_DIGITS[c] for c in text))


def rf_check_digits(base: str) -> str:
    """The two check digits of the reference body ``base`` (1-21 characters A-Z, 0-9)."""
    if not _BASE.fullmatch(base):
        raise ValueError(f"an RF reference body is 1-21 characters A-Z and 0-9, got {base!r}")
    return f"{98 - _number(base + 'RF00') % 97:02d}"


def rf_reference(base: str) -> str:
    """``RF`` + check digits + ``base`` (electronic form, no spaces)."""
    return f"RF{rf_check_digits(base)}{base}"


def rf_valid(reference: str) -> bool:
    """True when ``reference`` (spaces allowed, any case) is a well-formed RF reference with right check digits."""
    ref = reference.replace(" ", "").upper()
    if len(ref) < 5 or not ref.startswith("RF") or not ref[2:4].isdigit() or not _BASE.fullmatch(ref[4:]):
        return False
    return _number(ref[4:] + ref[:4]) % 97 == 1


def format_reference(reference: str) -> str:
    """The printed form: groups of four characters."""
    ref = reference.replace(" ", "")
    return " ".join(ref[i : i + 4] for i in range(0, len(ref), 4))


def _hash4(text: str) -> str:
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    out = ""
    for _ in range(4):
        n, r = divmod(n, 36)
        out += _B36[r]
    return out


def bill_reference(bill_id: str, account: str | None, period_start: date) -> str:
    """The RF reference of a bill (see the module docstring); the same bill id always gives the same reference."""
    letters = re.sub(r"[^A-Z0-9]", "", (account or "").upper())[-11:]
    return rf_reference(f"{letters}{period_start:%Y%m}{_hash4(bill_id)}")
