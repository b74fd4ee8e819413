"""A seed paper's claim as a comparison of two arms over seeds, and the verdict its interval gives.

  claim = Claim(paper=..., claim=..., metric="rollout/entropy/last",
                compare=("clip_higher", "symmetric"), direction=+1)
  values = measures(metrics_rows, claim.curves)        # one run's measures
  verdict([low, high], claim.direction, claim.margin)  # from the paired difference's interval

`experiments/reproduce.py` runs a reproduction's sweep and applies these;
the rules are in its docstring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

__all__ = [
    "SFT_STAGE",
    "SFT_START",
    "VERDICTS",
    "Claim",
    "Stage",
    "difference_keys",
    "measures",
    "paired_differences",
    "verdict",
]

VERDICTS = ("reproduced", "not reproduced", "inconclusive")

# The SFT start the benchmarks use (benchmarks/stages.py): a four-layer tiny
# policy, 600 steps of 64 demonstrations (30% with a wrong step) at lr 3e-3
# decaying to a tenth. Its held-out pass@1 on 3-step chains is about 0.57.
SFT_START = {
    "steps": 600,
    "model.overrides": {"num_layers": 4},
    "optim.learning_rate": 3e-3,
    "optim.total_steps": 600,
    "optim.warmup_steps": 30,
    "optim.end_factor": 0.1,
}


@dataclasses.dataclass(frozen=True)
class Stage:
    """A model trained once per reproduction workdir, before its runs.

    Attributes:
      name: its directory (workdir/<name>); its hf/ export is passed to the
        runs' config argument `arg` and to later stages that name it.
      config: "configs/file.py:arg".
      overrides: dotted-key overrides of that config.
      arg: the runs' config-argument key that receives its hf/ directory.
      inputs: {this stage's config-argument key: an earlier stage's name}.
      evaluate: evaluate it once at its end; its eval/* values go into the
        JSON line under "stages" (e.g. how good a reward model is).
    """

    name: str
    config: str
    overrides: dict = dataclasses.field(default_factory=dict)
    arg: str = "model_path"
    inputs: dict = dataclasses.field(default_factory=dict)
    evaluate: bool = False


SFT_STAGE = Stage("start", "configs/sft_arithmetic.py:error_rate=0.3", SFT_START)


@dataclasses.dataclass(frozen=True)
class Claim:
    """A paper's finding as a comparison of two arms over seeds.

    Attributes:
      paper: the paper's title.
      claim: what it reports, with its number.
      metric: the measure compared (a key of a run's measures).
      compare: (arm, baseline): per seed, measure(arm) − measure(baseline).
      direction: +1 / −1: the claim is that the difference is positive /
        negative; 0: that it is within ±margin.
      margin: the size of a difference that counts as none (≥ 0).
      curves: metrics.jsonl keys the figure plots against the step; "pass@k"
        plots the last evaluation's pass@k against k instead.
      stages: models trained once before the runs, in order (`Stage`); by
        default the shared SFT start, passed to the runs as `model_path`.
      paper_value: the paper's figure for the compared quantity, as text.
      measure: optional (metrics rows, run dir) → extra measures of a run.
      summary: optional {arm: {seed: measures}} → extra keys of the JSON line
        (e.g. where two curves cross).
    """

    paper: str
    claim: str
    metric: str
    compare: tuple[str, str]
    direction: int
    margin: float = 0.0
    curves: tuple[str, ...] = ("eval/pass@1",)
    stages: tuple[Stage, ...] = (SFT_STAGE,)
    paper_value: str = ""
    measure: Callable[[list[dict], str], dict[str, float]] | None = None
    summary: Callable[[dict], dict] | None = None

    def __post_init__(self):
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"Claim.direction must be -1, 0 or 1, got {self.direction}")
        if self.margin < 0:
            raise ValueError(f"Claim.margin must be >= 0, got {self.margin}")
        if self.direction == 0 and self.margin == 0:
            raise ValueError("Claim.direction 0 (no difference) needs a margin > 0")


def verdict(ci: Sequence[float], direction: int, margin: float = 0.0) -> str:
    """The verdict an interval [low, high] of arm − baseline gives (module docstring)."""
    low, high = ci
    if direction == 0:
        if -margin <= low and high <= margin:
            return "reproduced"
        if low > margin or high < -margin:
            return "not reproduced"
        return "inconclusive"
    low, high = sorted((direction * low, direction * high))  # the claimed side positive
    if margin > 0 and -margin <= low and high <= margin:
        return "not reproduced"  # any effect is smaller than one that counts
    if low > 0:
        return "reproduced"
    if high < 0:
        return "not reproduced"
    return "inconclusive"


def measures(rows: list[dict], curves: Sequence[str]) -> dict[str, float]:
    """A run's measures (module docstring) from its metrics rows."""
    out: dict[str, float] = {}
    evals = [r for r in rows if any(k.startswith("eval/") for k in r)]
    if evals:
        out.update({k: float(v) for k, v in evals[-1].items() if k.startswith("eval/")})
    keys = {k for r in rows for k in r if not k.startswith("eval/") and k != "step"}
    for key in sorted(keys | set(curves)):
        values = [float(r[key]) for r in rows if isinstance(r.get(key), int | float)]
        if not values or key.startswith("eval/"):
            continue
        quarter = max(len(values) // 4, 1)
        out[f"{key}/first"] = sum(values[:quarter]) / quarter
        out[f"{key}/last"] = sum(values[-quarter:]) / quarter
        out[f"{key}/max"] = max(values)
    return out


def paired_differences(found: dict, arm: str, base: str, key: str = "eval/pass@1") -> list[float]:
    """measure(arm) − measure(base) for each seed both ran, in seed order.

    `found` is {arm: {seed: measures}}, what a claim's `summary` receives.
    """
    seeds = sorted(set(found.get(arm, {})) & set(found.get(base, {})))
    return [round(found[arm][s][key] - found[base][s][key], 4) for s in seeds]


def difference_keys(
    found: dict, pairs: Sequence[tuple[str, str]], key: str = "eval/pass@1"
) -> dict:
    """JSON keys for several (arm, base) differences: per seed and their mean.

    "<arm>_minus_<base>_<key>_per_seed" and "<arm>_minus_<base>_<key>", with
    the key written as in the JSON line (eval/pass@1 → eval_pass_at_1).
    """
    name = key.replace("/", "_").replace("@", "_at_")
    out: dict = {}
    for arm, base in pairs:
        diffs = paired_differences(found, arm, base, key)
        out[f"{arm}_minus_{base}_{name}_per_seed"] = diffs
        out[f"{arm}_minus_{base}_{name}"] = round(sum(diffs) / len(diffs), 4) if diffs else None
    return out
