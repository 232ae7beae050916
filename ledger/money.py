"""Money: decimal yuan with exactly two places, never a float.

Amounts travel as strings (``"3080000.00"``) in entry bodies and in the API, and
as ``Decimal`` inside the ledger; the database stores integer fen (``bigint``) so
sums are exact and cheap.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

import msgspec

#: Largest amount accepted anywhere: one trillion yuan less a fen.
MAX_AMOUNT = Decimal("999999999999.99")

#: Largest balance the books keep, in fen, for a fund or a project's disbursed amount
#: (a thousand trillion yuan less a fen): an entry that would pass it is refused (409)
#: before anything is written. Totals are signed 64-bit integers, whose limit
#: ninety-two thousand of the largest amounts would pass; a month's receipts or
#: disbursements, kept as sums added in the database, are refused there (also 409,
#: ``ledger.sequencer``) should they ever reach it.
MAX_TOTAL_FEN = 10**17 - 1

AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,11})\.[0-9]{2}$"
SIGNED_AMOUNT_PATTERN = r"^-?(0|[1-9][0-9]{0,11})\.[0-9]{2}$"

#: A non-negative amount in yuan with exactly two places, as the API carries it.
Amount = Annotated[
    str,
    msgspec.Meta(
        pattern=AMOUNT_PATTERN,
        description="Amount in yuan as a decimal string with exactly two places, e.g. 3080000.00",
        examples=["3080000.00"],
    ),
]

_AMOUNT_RE = re.compile(AMOUNT_PATTERN)
_SIGNED_RE = re.compile(SIGNED_AMOUNT_PATTERN)


def parse_amount(text: str) -> Decimal:
    """Parse a two-place amount string; raise ValueError for anything else."""
    if not _SIGNED_RE.match(text):
        raise ValueError(f"not an amount with exactly two decimal places: {text!r}")
    return Decimal(text)


def to_fen(amount: Decimal | str) -> int:
    """Yuan to integer fen, exactly; refuses fractions of a fen."""
    if isinstance(amount, str) and _AMOUNT_RE.match(amount):
        # The common case, an amount as the API carries it: "3080000.00" -> 308000000.
        return int(amount[:-3]) * 100 + int(amount[-2:])
    value = parse_amount(amount) if isinstance(amount, str) else amount
    fen = value * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"amount has fractions of a fen: {value}")
    return int(fen)


def from_fen(fen: int | Decimal) -> str:
    """Integer fen to the canonical two-place string (``-12.50`` for -1250)."""
    if isinstance(fen, Decimal):
        # PostgreSQL's sum(bigint) is numeric; it is still whole fen.
        if fen != fen.to_integral_value():
            raise ValueError(f"not a whole number of fen: {fen}")
        fen = int(fen)
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"


def is_amount(text: str) -> bool:
    return bool(_AMOUNT_RE.match(text))
