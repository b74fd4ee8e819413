r"""A Bradley-Terry outcome reward model on arithmetic-chain preference pairs.

  python -m experiments.train --config configs/rm_arithmetic.py --workdir /tmp/rm
  python -m experiments.train --config configs/rm_arithmetic.py:runlocal=True --workdir /tmp/rm_local

Pairs are (reference solution ≻ a solution with one propagated error),
generated with exact labels, or, with `--config.data.pairs_from=policy`, the
start policy's own samples graded by the task (a correct ≻ an incorrect one);
the held-out evaluation reports pairwise and best-of-4 accuracy, calibration
and score-correctness correlation. An
ensemble is K runs with different seeds (`sweep`), combined at use time by
`orm_ensemble_reward` or `experiments/evaluate.py --checkpoint=a,b,c`.
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(
        arg, runlocal=False, model_path="", loss="bt_pairwise", margin_scale=0.0, center_coef=0.0
    )
    c = common.offline_base("rm", runlocal=arg.runlocal)
    # Initialise from an SFT checkpoint when given (its LM head is kept, unused).
    c.model.path = arg.model_path
    c.objective.loss = arg.loss
    c.objective.margin_scale = arg.margin_scale
    c.objective.kwargs = (
        dict(center_coef=arg.center_coef) if arg.loss == "bt_pairwise" else dict(tie_weight=1.0)
    )
    return c


def sweep(add):
    # Seeds give the members of an ensemble; the margin and centering variants
    # of mechanisms.md §6 beside them.
    for variant in ({}, {"objective.margin_scale": 1.0}, {"objective.kwargs.center_coef": 0.01}):
        for seed in range(3):
            add(**variant, seed=seed)
