r"""Reproduction: optimising a learned proxy RM, gold reward rises then falls; a better RM falls less.

  python -m experiments.reproduce overoptimization --workdir /tmp/repro_overoptimization
  python -m experiments.reproduce overoptimization --workdir /tmp/r --runlocal --seeds 0

Stages, once per workdir: the shared SFT start, then two Bradley-Terry ORMs
initialised from it (configs/rm_arithmetic.py: reference solution ≻ the same
solution with one propagated error), 400 steps of 32 pairs each, which
differ only in their training data, as the paper's RM-data axis:

  orm_small  512 generated pairs (25 epochs: a poor, overfitted proxy)
  orm_large  16384 generated pairs (under one epoch)

Arms, GRPO on 3-step arithmetic chains from the start, 3 seeds each, the
ORM's raw score the only reward (no verifier); the task's checker is the
gold reward, logged but never optimised:

  rl_orm_small  against orm_small
  rl_orm_large  against orm_large

A small k3 KL penalty (β = 0.001, in the loss) is on so that the trainer
computes, and logs, KL(π‖π_start) (kl/ref_k1), the paper's x-axis; it
barely restrains the policy. Proxy: reward/orm/mean; gold:
reward/accuracy (the rollouts' correctness) and eval/pass@1 (200 held-out
problems × 4 samples every 50 steps). The compared measure is the gold
drop: the training gold curve, averaged in blocks of a tenth of the steps,
at its best block minus its last block (≥ 0; 0 when gold never falls). The
claim is that it is larger against the small-data ORM (direction +1).
`summary` gives per arm the proxy, gold and KL at the end, and the KL at
the gold peak.

Size: SFT start ~1.5-2 min; each ORM 400 steps at about 3 steps/s, ~2.5 min
with its data; each RL run 150 steps × 16 prompts × 8 samples with an ORM
forward and a reference forward per step plus 3 evaluations, ~1.5-2 min;
about 15-25 minutes in all on a 2-core CPU.
"""

import numpy as np

from configs import common, grpo_arithmetic_orm
from rewardjax.evaluation.reproduction import SFT_STAGE, Claim, Stage

# Arm → the run's config-argument key holding its ORM (a stage's hf/ directory).
ARMS = {"rl_orm_small": "orm_small_path", "rl_orm_large": "orm_large_path"}
ORM_STEPS = 400


def _orm_stage(name: str, num_train: int) -> Stage:
    overrides = {"steps": ORM_STEPS, "optim.total_steps": ORM_STEPS}
    if num_train:
        overrides["data.num_train"] = num_train
    return Stage(
        name,
        "configs/rm_arithmetic.py",
        overrides,
        arg=f"{name}_path",
        inputs={"model_path": "start"},
        evaluate=True,  # the ORM's held-out accuracy goes into the JSON line
    )


def _gold(rows: list[dict], run_dir: str) -> dict[str, float]:
    """Gold (task accuracy) drop and the KL at its peak.

    The rollouts' accuracy per step (reward/accuracy) is averaged in
    consecutive blocks of a tenth of the steps (a noisy per-step maximum
    would make the drop positive by chance alone); gold_drop = best block −
    last block. gold_drop_heldout is the same on the held-out pass@1
    evaluations (max − last).
    """
    del run_dir
    steps = [r for r in rows if isinstance(r.get("reward/accuracy"), int | float)]
    if not steps:
        return {}
    width = max(len(steps) // 10, 1)
    blocks = [steps[i : i + width] for i in range(0, len(steps) - width + 1, width)]
    gold = [float(np.mean([r["reward/accuracy"] for r in b])) for b in blocks]
    peak = int(np.argmax(gold))
    out = {
        "gold/first": gold[0],
        "gold/best": gold[peak],
        "gold/last": gold[-1],
        "gold_drop": gold[peak] - gold[-1],
    }
    kl = [r["kl/ref_k1"] for r in blocks[peak] if isinstance(r.get("kl/ref_k1"), int | float)]
    if kl:
        out["kl_at_gold_peak"] = float(np.mean(kl))
    evals = [float(r["eval/pass@1"]) for r in rows if isinstance(r.get("eval/pass@1"), int | float)]
    if evals:
        out["gold_drop_heldout"] = max(evals) - evals[-1]
    return out


def _summary(found: dict) -> dict:
    """Per arm, the mean over seeds of the proxy, gold and KL at the end and KL at the gold peak."""
    keys = {
        "proxy_last": "reward/orm/mean/last",
        "proxy_first": "reward/orm/mean/first",
        "gold_last": "gold/last",
        "gold_best": "gold/best",
        "gold_drop_heldout": "gold_drop_heldout",
        "pass_at_1": "eval/pass@1",
        "kl_last": "kl/ref_k1/last",
        "kl_at_gold_peak": "kl_at_gold_peak",
    }
    out: dict = {}
    for arm, runs in found.items():
        for name, key in keys.items():
            values = [m[key] for m in runs.values() if key in m]
            if values:
                out[f"{arm}_{name}"] = round(float(np.mean(values)), 4)
    return out


REPRODUCTION = Claim(
    paper="Scaling Laws for Reward Model Overoptimization",
    claim=(
        "optimising a learned proxy RM, the proxy reward keeps rising with KL while the gold "
        "reward rises then falls; RMs of more parameters or more data over-optimise less"
    ),
    metric="gold_drop",
    compare=("rl_orm_small", "rl_orm_large"),
    direction=+1,
    curves=("reward/orm/mean", "reward/accuracy", "kl/ref_k1", "eval/pass@1"),
    stages=(SFT_STAGE, _orm_stage("orm_small", 512), _orm_stage("orm_large", 0)),
    paper_value=(
        "gold RL reward peaks and falls with √KL while the proxy rises; the peak comes later "
        "and higher for larger RMs (Fig. 1b, 3)"
    ),
    measure=_gold,
    summary=_summary,
)


def get_config(arg=None):
    arg = common.parse_arg(
        arg,
        runlocal=False,
        model_path="",
        orm_small_path="",
        orm_large_path="",
        arm="rl_orm_small",
    )
    if arg.arm not in ARMS:
        raise ValueError(f"arm={arg.arm!r}; known: {', '.join(ARMS)}")
    orm_path = arg[ARMS[arg.arm]]
    if not orm_path:
        raise ValueError(
            f"arm={arg.arm} needs {ARMS[arg.arm]}= (the ORM stage's hf/ directory; "
            "experiments/reproduce.py trains it unless --start is given)"
        )
    c = grpo_arithmetic_orm.get_config(
        f"runlocal={arg.runlocal},model_path={arg.model_path},orm_paths={orm_path},"
        "transform=raw,orm_weight=1.0,verifier_weight=0"
    )
    # KL(π‖π_start) is computed (and logged as kl/ref_k1) only with a KL term.
    c.kl.placement, c.kl.coef = "loss", 0.001
    common.reproduction_run(c, steps=150, eval_every=50, num_samples=4, runlocal=arg.runlocal)
    return c


def sweep(add):
    common.arm_sweep(add, ARMS)
