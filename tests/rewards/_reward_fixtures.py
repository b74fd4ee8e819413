"""Reward functions that misbehave on purpose, for the reward computer's tests.

Registered under "testonly_*" keys when imported (worker processes import this
module by name when they meet one of these keys).
"""

import time

from rewardjax.registry import REWARDS
from rewardjax.rewards import RewardOutput, register_reward


def _register(name, **kw):
    def decorator(fn):
        if name not in REWARDS:
            register_reward(name, **kw)(fn)
        return fn

    return decorator


@_register("testonly_misbehave")
def misbehave(prompts, completions, fields, *, sleep_s=2.0):
    """ "boom" raises, "nan"/"inf" give non-finite scores, "none" is unscorable,
    "slow" sleeps, anything else scores its length."""
    out = []
    for c in completions:
        if c == "boom":
            raise RuntimeError("grader bug")
        if c == "slow":
            time.sleep(sleep_s)
        out.append({"nan": float("nan"), "inf": float("inf"), "none": None}.get(c, float(len(c))))
    return out


@_register("testonly_wrong_length")
def wrong_length(prompts, completions, fields):
    return [1.0] * (len(completions) + 1)


@_register("testonly_steps", per_sample=False)
def steps(prompts, completions, fields):
    return RewardOutput(
        [1.0] * len(completions),
        step_scores=[[0.5] * (i + 1) for i in range(len(completions))],
        diagnostics={"group": [f["group_id"] for f in fields]},
    )
