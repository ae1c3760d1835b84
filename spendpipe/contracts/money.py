"""Exact money: costs are `Decimal` in Python, strings on the wire, `Decimal(38, 24)` in ClickHouse
(window totals `Decimal(76, 24)`)."""

import re
from decimal import ROUND_DOWN, Context, Decimal, Inexact, InvalidOperation, Overflow

COST_SCALE = 24
"""Fractional digits kept for a cost; matches the ClickHouse column `Decimal(38, 24)`."""

COST_PRECISION = 38

COST_FORM = re.compile(rf"^(?:0|[1-9][0-9]{{0,{COST_PRECISION - COST_SCALE - 1}}})(?:\.[0-9]+)?$")
"""A cost as a wire string: plain decimal digits, at most 14 before the point (what
`Decimal(38, 24)` holds) and a fraction if any (at most 24 digits, checked with the amount); no
sign, exponent, underscore, space or leading zero. `format(cost, "f")` writes this for every
cost the contract allows."""

MONEY_CONTEXT = Context(prec=COST_PRECISION, traps=[Inexact, Overflow, InvalidOperation])
"""Arithmetic on costs in this context raises instead of rounding: a sum is exact or fails."""

_QUANTUM = Decimal(1).scaleb(-COST_SCALE)


COST_SIGNIFICANT_DIGITS = 15
"""Significant digits a float cost is read to: DBL_DIG, the most that every decimal survives a
round trip through a binary float with."""


def cost_from_float(value: float) -> Decimal:
    """Turn LiteLLM's float `response_cost` into the decimal its price-map arithmetic meant.

    LiteLLM multiplies token counts by per-token prices (decimals such as `2.5e-06`) in binary
    floats, so `0.000225` arrives as `0.00022500000000000002`; `repr` keeps that noise. Every
    decimal of at most 15 significant digits (DBL_DIG) comes back unchanged from the float nearest
    to it when printed to 15 significant digits, so this reads the float to 15 significant digits
    and drops the trailing zeros: `0.000225` again. A float that stands for no decimal that short
    (17 digits of real arithmetic) is recorded within half a unit in its 15th digit, about 5e-16
    of its value. Values with more than 24 fractional digits (below a trillionth of a cent) are
    rounded to 24; nothing LiteLLM's price map produces comes near that. Totals are exact sums of
    what this returns.
    """
    exact = Decimal(format(float(value), f".{COST_SIGNIFICANT_DIGITS}g"))
    if exact.as_tuple().exponent < -COST_SCALE:  # type: ignore[operator]
        return exact.quantize(_QUANTUM)
    return exact


def add_costs(a: Decimal, b: Decimal) -> Decimal:
    return MONEY_CONTEXT.add(a, b)


def at_cost_scale(value: Decimal) -> Decimal:
    """`value` with at most the 24 fractional digits of `Decimal(38, 24)` when only zeros go
    (`0.1000…0` written with 40 digits is 0.1); otherwise unchanged, for the amount check to
    refuse. A column of that scale, or an Arrow array of it, cannot take more digits, even zeros."""
    if value.as_tuple().exponent < -COST_SCALE:  # type: ignore[operator]
        try:
            return value.quantize(_QUANTUM, context=MONEY_CONTEXT)
        except (Inexact, InvalidOperation):
            return value
    return value


def cost_floor(value: Decimal) -> Decimal:
    """`value` cut (never rounded up) to the 24 fractional digits a cost keeps: a share of
    headroom or a rate worked out by division, made a cost without lending a fraction more."""
    if value.as_tuple().exponent < -COST_SCALE:  # type: ignore[operator]
        return value.quantize(_QUANTUM, rounding=ROUND_DOWN)
    return value
