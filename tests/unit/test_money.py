"""Exact money: floats from LiteLLM become the decimal their price-map arithmetic meant (read to
15 significant digits); sums never round."""

from decimal import Decimal, Inexact

import litellm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendpipe.contracts.money import MONEY_CONTEXT, add_costs, cost_from_float

PRICED_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo", "gpt-4", "gpt-4-turbo")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.00022500000000000002, Decimal("0.000225")),
        (0.1 + 0.2, Decimal("0.3")),
        (1.35e-05, Decimal("0.0000135")),
        (0.1, Decimal("0.1")),
        (0.0, Decimal(0)),
        (12.5, Decimal("12.5")),
    ],
)
def test_cost_from_float_is_the_short_decimal_the_float_stands_for(value: float, expected: Decimal) -> None:
    assert cost_from_float(value) == expected


def test_cost_from_float_is_not_the_binary_expansion() -> None:
    assert cost_from_float(0.1) != Decimal.from_float(0.1)


def test_costs_below_24_decimals_are_rounded_to_24() -> None:
    assert cost_from_float(1e-30) == 0
    assert cost_from_float(1.5e-24) == Decimal("0.000000000000000000000002")
    assert cost_from_float(1.2345678901234567e-20).as_tuple().exponent == -24


@given(st.decimals(min_value=Decimal("1e-9"), max_value=Decimal(10**6), places=15, allow_nan=False))
def test_every_decimal_of_15_significant_digits_survives_the_float(value: Decimal) -> None:
    decimal = MONEY_CONTEXT.create_decimal(format(value, ".15g"))  # at most 15 significant digits

    assert cost_from_float(float(decimal)) == decimal


@given(st.floats(min_value=1e-7, max_value=1e6))
def test_any_float_is_recorded_within_half_a_unit_of_its_15th_digit(value: float) -> None:
    cost = cost_from_float(value)
    unit_of_15th_digit = Decimal(1).scaleb(Decimal(value).adjusted() - 14)

    assert abs(cost - Decimal(value)) <= unit_of_15th_digit / 2
    assert len(cost.as_tuple().digits) <= 15


@pytest.mark.parametrize("model", PRICED_MODELS)
@settings(deadline=None)  # LiteLLM's pricing is not ours to time; its first call loads its tables
@given(prompt=st.integers(0, 200_000), completion=st.integers(0, 50_000))
def test_litellm_costs_are_the_exact_price_map_products(model: str, prompt: int, completion: int) -> None:
    # given LiteLLM's per-token prices, which are short decimals in its price map
    prices = litellm.model_cost[model]
    price_in, price_out = Decimal(repr(prices["input_cost_per_token"])), Decimal(repr(prices["output_cost_per_token"]))

    # when LiteLLM prices a call in floats
    cost_in, cost_out = litellm.cost_per_token(model=model, prompt_tokens=prompt, completion_tokens=completion)

    # then the recorded cost is the decimal product, without float noise
    assert cost_from_float(cost_in + cost_out) == price_in * prompt + price_out * completion


def test_a_mocked_completion_costs_the_price_map_product_not_its_float_noise() -> None:
    response = litellm.completion(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], mock_response="hello " * 7
    )
    usage, prices = response.usage, litellm.model_cost["gpt-4o"]
    expected = (
        Decimal(repr(prices["input_cost_per_token"])) * usage.prompt_tokens
        + Decimal(repr(prices["output_cost_per_token"])) * usage.completion_tokens
    )

    cost = litellm.completion_cost(completion_response=response)

    assert cost_from_float(cost) == expected
    assert Decimal(repr(cost)) != expected  # this cost is one of those the float leaves noisy


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
