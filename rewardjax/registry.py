"""Name → component registries.

Every mechanism (loss, advantage estimator, reward, selection rule, ...) is
registered under one snake_case key and chosen by config:

  loss_fn = functools.partial(POLICY_LOSSES.get(c.loss.name), **c.loss.kwargs)

Keys are unique across *all* registries (mechanisms.md §12): the seed papers
reuse acronyms, so a key must name one thing only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# Every key in every registry, mapped to the registry that owns it.
_ALL_KEYS: dict[str, str] = {}


class Registry(Generic[F]):
    """A named table of components with a decorator to fill it."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, F] = {}

    def register(self, name: str, *, shared: bool = False) -> Callable[[F], F]:
        """Decorator adding `fn` under `name`.

        Args:
          name: snake_case key, unique across all registries unless `shared`.
          shared: allow the same key in a second registry (used for the
            aggregation modes, which are both a policy-loss keyword and a kernel
            option, never for mechanisms).
        """

        def decorator(fn: F) -> F:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            owner = _ALL_KEYS.get(name)
            if owner is not None and owner != self.kind and not shared:
                raise ValueError(
                    f"key {name!r} is already registered in {owner}; keys are unique "
                    "across registries (mechanisms.md §12)"
                )
            self._items[name] = fn
            _ALL_KEYS.setdefault(name, self.kind)
            return fn

        return decorator

    def get(self, name: str) -> F:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


POLICY_LOSSES: Registry = Registry("policy loss")
LOSS_AGGREGATIONS: Registry = Registry("loss aggregation")
ADVANTAGES: Registry = Registry("advantage estimator")
KL_ESTIMATORS: Registry = Registry("KL estimator")
PREFERENCE_LOSSES: Registry = Registry("preference loss")
SFT_LOSSES: Registry = Registry("SFT loss")
REWARD_MODEL_LOSSES: Registry = Registry("reward-model loss")
CREDIT_RULES: Registry = Registry("process-credit rule")
REWARDS: Registry = Registry("reward function")
SHAPING: Registry = Registry("reward shaping")
TASKS: Registry = Registry("procedural task")
CURATION: Registry = Registry("curation rule")
SELECTION_RULES: Registry = Registry("test-time selection rule")
METRICS: Registry = Registry("evaluation metric")
MODEL_REWARDS: Registry = Registry("model reward source")
