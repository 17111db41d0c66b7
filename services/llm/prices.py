"""The price table (prices.yaml): USD per 1K input/output tokens by model name, shared by backends."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from services.common.config import ConfigError

log = logging.getLogger("echo.llm.prices")

DEFAULT_PATH = Path(__file__).with_name("prices.yaml")


@dataclass(frozen=True)
class Price:
    input_per_1k: float
    output_per_1k: float


class PriceTable:
    def __init__(self, prices: dict[str, Price]) -> None:
        self.prices = prices
        self._warned: set[str] = set()

    @classmethod
    def load(cls, path: str | Path = "") -> PriceTable:
        path = Path(path or DEFAULT_PATH)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read the price table {path}: {e}") from e
        prices: dict[str, Price] = {}
        for model, row in (data.get("models") or {}).items():
            try:
                prices[str(model)] = Price(float(row["input"]), float(row["output"]))
            except (TypeError, KeyError, ValueError):
                raise ConfigError(f"{path}: {model} needs numeric 'input' and 'output' prices") from None
        return cls(prices)

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        price = self.prices.get(model)
        if price is None:
            # An unpriced model is more likely self-hosted than free; say so once rather than guess.
            if model not in self._warned:
                self._warned.add(model)
                log.warning("no price for model %r in the price table; reporting cost 0", model)
            return 0.0
        return (input_tokens * price.input_per_1k + output_tokens * price.output_per_1k) / 1000.0
