r"""DPO on arithmetic-chain preference pairs from an SFT warm start.

  python -m experiments.train --config configs/sft_arithmetic.py:error_rate=0.3 --workdir /tmp/sft
  python -m experiments.train --config configs/dpo_arithmetic.py:model_path=/tmp/sft/hf --workdir /tmp/dpo
  python -m experiments.train --config configs/dpo_arithmetic.py:runlocal=True --workdir /tmp/dpo_local

The reference is the frozen SFT model (its log-probs precomputed once); any
loss of `PREFERENCE_LOSSES` is chosen with `loss=` (dpo_sigmoid, dpo_cdpo,
dpo_robust, dpo_hinge, ipo_identity, adpo_anchored). The held-out
evaluation reports pass@k, to compare with the SFT start.
"""

from configs import common

# Keyword arguments of each loss beyond β (mechanisms.md §4 defaults).
LOSS_KWARGS = {
    "dpo_sigmoid": {},
    "dpo_cdpo": dict(label_smoothing=0.1),
    "dpo_robust": dict(label_smoothing=0.1),
    "dpo_hinge": {},
    "ipo_identity": {},
    "adpo_anchored": {},
}


def get_config(arg=None):
    arg = common.parse_arg(
        arg, runlocal=False, model_path="", loss="dpo_sigmoid", beta=0.1, precompute=True
    )
    if arg.loss not in LOSS_KWARGS:
        raise ValueError(f"loss={arg.loss!r}; known: {', '.join(LOSS_KWARGS)}")
    c = common.offline_base("dpo", runlocal=arg.runlocal)
    c.model.path = arg.model_path
    c.objective.loss = arg.loss
    # adpo_anchored with τ = 1/β is dpo_sigmoid on K = 2 candidates.
    beta = {"tau": 1.0 / arg.beta} if arg.loss == "adpo_anchored" else {"beta": arg.beta}
    c.objective.kwargs = dict(**beta, **LOSS_KWARGS[arg.loss])
    c.reference.precompute = arg.precompute
    return c


def sweep(add):
    # Losses that share the β keyword; the SFT start comes from the command line.
    for loss in ("dpo_sigmoid", "ipo_identity", "dpo_hinge"):
        for seed in range(3):
            add(**{"objective.loss": loss, "seed": seed})
