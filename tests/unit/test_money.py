"""Exact money: floats from LiteLLM become the Decimal they print as; sums never round."""

from decimal import Decimal, Inexact

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spendpipe.contracts.money import MONEY_CONTEXT, add_costs, cost_from_float


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.00022500000000000002, Decimal("0.00022500000000000002")),
        (1.35e-05, Decimal("0.0000135")),
        (0.1, Decimal("0.1")),
        (0.0, Decimal(0)),
        (12.5, Decimal("12.5")),
    ],
)
def test_cost_from_float_is_the_decimal_the_float_prints_as(value: float, expected: Decimal) -> None:
    assert cost_from_float(value) == expected


def test_cost_from_float_is_not_the_binary_expansion() -> None:
    assert cost_from_float(0.1) != Decimal.from_float(0.1)


def test_costs_below_24_decimals_are_rounded_to_24() -> None:
    assert cost_from_float(1e-30) == 0
    assert cost_from_float(1.5e-24) == Decimal("0.000000000000000000000002")
    assert cost_from_float(1.2345678901234567e-20).as_tuple().exponent == -24


@given(st.floats(min_value=1e-7, max_value=1e6))
def test_cost_from_float_converts_back_to_the_same_float(value: float) -> None:
    cost = cost_from_float(value)

    assert float(cost) == value
    assert cost == Decimal(str(value))


def test_ten_dimes_sum_to_exactly_one_dollar() -> None:
    total = Decimal(0)
    for _ in range(10):
        total = add_costs(total, cost_from_float(0.1))

    assert total == Decimal(1)
    assert sum([0.1] * 10) != 1.0  # what summing the floats would have given


def test_money_context_raises_instead_of_rounding() -> None:
    with pytest.raises(Inexact):
        MONEY_CONTEXT.add(Decimal("1E+20"), Decimal("1E-20"))
    with pytest.raises(Inexact):
        add_costs(Decimal("99999999999999.999999999999999999999999"), Decimal("0.000000000000000000000002"))


def test_money_context_keeps_38_digits() -> None:
    a = Decimal("12345678901234.123456789012345678901234")

    assert add_costs(a, a) == Decimal("24691357802468.246913578024691357802468")
