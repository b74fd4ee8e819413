r"""A Bradley-Terry outcome reward model on arithmetic-chain preference pairs.

  python -m experiments.train --config configs/rm_arithmetic.py --workdir /tmp/rm
  python -m experiments.train --config configs/rm_arithmetic.py:runlocal=True --workdir /tmp/rm_local
  python -m experiments.train --config configs/rm_arithmetic.py:runlocal=True,loss=regression_rm,attributes=correctness+length --workdir /tmp/rm_ratings
  python -m experiments.train --config configs/rm_arithmetic.py:runlocal=True,loss=bt_plus_regression,attributes=correctness+progress --workdir /tmp/rm_bt_reg

Pairs are (reference solution ≻ a solution with one propagated error),
generated with exact labels, or, with `--config.data.pairs_from=policy`, the
start policy's own samples graded by the task (a correct ≻ an incorrect one);
the held-out evaluation reports pairwise and best-of-4 accuracy, calibration
and score-correctness correlation. An
ensemble is K runs with different seeds (`sweep`), combined at use time by
`orm_ensemble_reward` or `experiments/evaluate.py --checkpoint=a,b,c`.

`loss=regression_rm` fits rated responses (data.ratings_path, else generated
demonstrations rated on correctness 0/1, progress = share of reference lines
right before the first error, length = characters / 100) with one head output
per attribute of `attributes=` ("+"-separated); `loss=bt_plus_regression`
adds that regression (× regression_coef) to Bradley-Terry on pairs, whose
reward is the first attribute's output. A multi-output head is not exported
as HF (export_hf=False).
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(
        arg,
        runlocal=False,
        model_path="",
        loss="bt_pairwise",
        margin_scale=0.0,
        center_coef=0.0,
        attributes="correctness",
        regression_coef=1.0,
    )
    c = common.offline_base("rm", runlocal=arg.runlocal)
    # Initialise from an SFT checkpoint when given (its LM head is kept, unused).
    c.model.path = arg.model_path
    c.objective.loss = arg.loss
    c.objective.margin_scale = arg.margin_scale
    loss_kwargs = {
        "bt_pairwise": dict(center_coef=arg.center_coef),
        "bt_tie_aware": dict(tie_weight=1.0),
        "regression_rm": {},
        "bt_plus_regression": dict(regression_coef=arg.regression_coef),
    }
    if arg.loss not in loss_kwargs:
        raise ValueError(f"loss={arg.loss!r}; known: {', '.join(loss_kwargs)}")
    c.objective.kwargs = loss_kwargs[arg.loss]
    if arg.loss in ("regression_rm", "bt_plus_regression"):
        attributes = arg.attributes.split("+")
        c.data.attributes = attributes
        c.model.overrides = dict(reward_outputs=len(attributes))
        # HF exports carry a scalar reward head only.
        c.export_hf = len(attributes) == 1
    return c


def sweep(add):
    # Seeds give the members of an ensemble; the margin and centering variants
    # of mechanisms.md §6 beside them.
    for variant in ({}, {"objective.margin_scale": 1.0}, {"objective.kwargs.center_coef": 0.01}):
        for seed in range(3):
            add(**variant, seed=seed)
