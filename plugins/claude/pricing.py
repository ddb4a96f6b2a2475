"""Token prices per model, and the cost of a call in millionths of a dollar.

Prices are USD per million tokens (Anthropic's published list prices for the
standard tier): input, output, a 5-minute cache write, a cache read. A 1-hour
cache write costs twice the input price. A model is matched exactly, then by
the longest known prefix (dated snapshots like ``claude-sonnet-4-5-20250929``),
then by family (opus, sonnet, haiku: the family's current price, logged once
as an estimate); anything else costs 0 with a logged warning. Long-context
(>200k input tokens) surcharges and batch discounts are not modelled.

Because prices are per *million* tokens, ``tokens * price`` is already in
micro-dollars.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float  # 5-minute ephemeral cache write
    cache_read: float

    @property
    def cache_write_1h(self) -> float:
        """A 1-hour cache write: twice the input price."""
        return 2 * self.input


_OPUS_4 = Price(15.0, 75.0, 18.75, 1.50)
_OPUS_45 = Price(5.0, 25.0, 6.25, 0.50)
_SONNET = Price(3.0, 15.0, 3.75, 0.30)
_HAIKU_45 = Price(1.0, 5.0, 1.25, 0.10)
_HAIKU_35 = Price(0.80, 4.0, 1.0, 0.08)
_HAIKU_3 = Price(0.25, 1.25, 0.30, 0.03)

#: Known models (and aliases) by name or name prefix.
PRICES: dict[str, Price] = {
    "claude-opus-4-8": _OPUS_45,
    "claude-opus-4-7": _OPUS_45,
    "claude-opus-4-6": _OPUS_45,
    "claude-opus-4-5": _OPUS_45,
    "claude-opus-4-1": _OPUS_4,
    "claude-opus-4-0": _OPUS_4,
    "claude-opus-4-20250514": _OPUS_4,
    "claude-sonnet-4-6": _SONNET,
    "claude-sonnet-4-5": _SONNET,
    "claude-sonnet-4-0": _SONNET,
    "claude-sonnet-4-20250514": _SONNET,
    "claude-haiku-4-5": _HAIKU_45,
    "claude-3-7-sonnet": _SONNET,
    "claude-3-5-sonnet": _SONNET,
    "claude-3-5-haiku": _HAIKU_35,
    "claude-3-opus": _OPUS_4,
    "claude-3-sonnet": _SONNET,
    "claude-3-haiku": _HAIKU_3,
}

#: The current price of each family, used for models newer than this table.
FAMILY_PRICES: dict[str, Price] = {"opus": _OPUS_45, "sonnet": _SONNET, "haiku": _HAIKU_45}

#: Anthropic's server-side web search: $10 per 1,000 searches, on top of the tokens (micro-dollars per search).
#: Web fetch and code execution cost only their tokens here (code execution's container hours beyond the
#: free allowance are not modelled).
WEB_SEARCH_MICROS = 10_000

_warned: set[str] = set()


def price_for(model: str) -> Price | None:
    """The price of ``model`` (exact, prefix, then family), or None if unknown."""
    if model in PRICES:
        return PRICES[model]
    prefixes = [name for name in PRICES if model.startswith(name + "-")]
    if prefixes:
        return PRICES[max(prefixes, key=len)]
    for family, price in FAMILY_PRICES.items():
        if family in model:
            _warn_once(
                model, f"claude: no price listed for {model!r}; estimating with the current {family} price"
            )
            return price
    _warn_once(model, f"claude: no price known for {model!r}; its cost is recorded as 0")
    return None


def _warn_once(model: str, message: str) -> None:
    if model not in _warned:
        _warned.add(model)
        log.warning(message)


def cost_micros(
    model: str,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    *,
    cache_creation_1h_tokens: int = 0,
) -> int:
    """Cost of one call in millionths of a dollar (rounded up so spending is never under-counted).

    ``cache_creation_1h_tokens`` is the part of ``cache_creation_input_tokens`` written with a 1-hour TTL.
    """
    price = price_for(model)
    if price is None:
        return 0
    one_hour = min(max(0, cache_creation_1h_tokens), max(0, cache_creation_input_tokens))
    five_minutes = max(0, cache_creation_input_tokens) - one_hour
    total = (
        max(0, input_tokens) * price.input
        + max(0, output_tokens) * price.output
        + five_minutes * price.cache_write
        + one_hour * price.cache_write_1h
        + max(0, cache_read_input_tokens) * price.cache_read
    )
    whole = int(total)
    return whole if total - whole < 1e-9 else whole + 1


def usage_cost_micros(model: str, usage: Any) -> int:
    """Cost of an SDK ``Usage`` object (reads the 1-hour cache breakdown when present)."""
    creation = getattr(usage, "cache_creation", None)
    one_hour = int(getattr(creation, "ephemeral_1h_input_tokens", 0) or 0) if creation is not None else 0
    return cost_micros(
        model,
        int(getattr(usage, "input_tokens", 0) or 0),
        int(getattr(usage, "output_tokens", 0) or 0),
        int(getattr(usage, "cache_creation_input_tokens", 0) or 0),
        int(getattr(usage, "cache_read_input_tokens", 0) or 0),
        cache_creation_1h_tokens=one_hour,
    )
