"""What a call cost, priced by LiteLLM exactly as its own `BudgetManager` prices it."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Priced:
    cost: float
    model: str
    prompt_tokens: int
    completion_tokens: int


def price_call(completion_obj: Any, model: str | None, input_text: str | None, output_text: str | None) -> Priced:
    """From the texts when `model`, `input_text` and `output_text` are all given, else from the
    response. Raises ValueError (LiteLLM's message) when neither is."""
    import litellm  # noqa: PLC0415 - LiteLLM's own pricing, only when asked

    if model and input_text and output_text:
        prompt = litellm.token_counter(model=model, messages=[{"role": "user", "content": input_text}])
        completion = litellm.token_counter(model=model, messages=[{"role": "user", "content": output_text}])
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt, completion_tokens=completion
        )
        return Priced(prompt_cost + completion_cost, model, prompt, completion)
    if completion_obj:
        usage = getattr(completion_obj, "usage", None)
        return Priced(
            litellm.completion_cost(completion_response=completion_obj),
            completion_obj["model"],
            getattr(usage, "prompt_tokens", 0) or 0,
            getattr(usage, "completion_tokens", 0) or 0,
        )
    raise ValueError(
        "Either a chat completion object or the text response needs to be passed in. "
        "Learn more - https://docs.litellm.ai/docs/budget_manager"
    )


def prompt_cost(model: str, messages: list[dict[str, Any]]) -> float:
    """The cost of the prompt alone, as LiteLLM's `projected_cost` counts it."""
    import litellm  # noqa: PLC0415

    text = "".join(str(message["content"]) for message in messages)
    tokens = litellm.token_counter(model=model, text=text)
    cost, _ = litellm.cost_per_token(model=model, prompt_tokens=tokens, completion_tokens=0)
    return float(cost)
