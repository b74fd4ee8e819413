"""Name → component registries.

Every mechanism (loss, advantage estimator, reward, selection rule, ...) is
registered under one snake_case key and chosen by config, its hyperparameters
bound and checked once, at start:

  loss_fn = bind(POLICY_LOSSES.get(c.loss.name), c.loss.kwargs, what="loss.kwargs")

Keys are unique across *all* registries (mechanisms.md §12): the seed papers
reuse acronyms, so a key must name one thing only.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
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


def hyperparameters(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword-only parameters of `fn` (of `fn.func` for a partial), by name."""
    params = inspect.signature(fn).parameters
    return {k: p for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def bind(
    fn: Callable[..., Any],
    kwargs: Mapping[str, Any],
    *,
    what: str = "loss.kwargs",
    reserved: Mapping[str, str] | None = None,
) -> functools.partial:
    """`functools.partial(fn, **kwargs)` after checking every key against fn's hyperparameters.

    Called once when a trainer starts, so that a mistyped key (`clip_hgh`) fails
    there, naming itself, instead of being ignored or failing inside a trace.

    Args:
      fn: a registered component; its hyperparameters are its keyword-only
        parameters.
      kwargs: the config block of keyword arguments, e.g. `c.loss.kwargs`.
      what: the config path of `kwargs`, for the error message.
      reserved: keyword-only parameters the caller passes itself, mapped to
        where their value comes from (e.g. {"kl_coef": "kl.coef"}); setting one
        in `kwargs` is an error that says where it belongs.

    Returns:
      The partial, with the keys of `kwargs` bound.

    Raises:
      ValueError: a key that fn does not accept or that is reserved, or a
        keyword-only parameter without default that neither sets; the message
        names the key, `what` and the accepted keys.
    """
    kwargs, reserved = dict(kwargs), dict(reserved or {})
    params = hyperparameters(fn)
    name = getattr(fn, "__name__", repr(fn))
    accepted = sorted(k for k in params if k not in reserved)
    for key in kwargs:
        if key in reserved:
            raise ValueError(f"{what}.{key}: {name} gets {key!r} from {reserved[key]}, not {what}")
        if key not in params:
            raise ValueError(
                f"{what}.{key}: {name} has no keyword {key!r}; accepted: {', '.join(accepted)}"
            )
    missing = [
        k
        for k, p in params.items()
        if p.default is inspect.Parameter.empty and k not in kwargs and k not in reserved
    ]
    if missing:
        raise ValueError(f"{what}: {name} needs {', '.join(f'{what}.{k}' for k in missing)}")
    return functools.partial(fn, **kwargs)


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
