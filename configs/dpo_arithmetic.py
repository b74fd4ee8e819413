r"""DPO on arithmetic-chain preference pairs from an SFT warm start.

  python -m experiments.train --config configs/sft_arithmetic.py:error_rate=0.3 --workdir /tmp/sft
  python -m experiments.train --config configs/dpo_arithmetic.py:model_path=/tmp/sft/hf --workdir /tmp/dpo
  python -m experiments.train --config configs/dpo_arithmetic.py:runlocal=True --workdir /tmp/dpo_local
  python -m experiments.train --config configs/dpo_arithmetic.py:runlocal=True,loss=adpo_anchored,format=lists,target=softmax_scores --workdir /tmp/adpo_lists

The reference is the frozen SFT model (its log-probs precomputed once); any
loss of `PREFERENCE_LOSSES` is chosen with `loss=` (dpo_sigmoid, dpo_cdpo,
dpo_robust, dpo_hinge, ipo_identity, adpo_anchored). The held-out
evaluation reports pass@k, to compare with the SFT start.

`format=lists` trains adpo_anchored on ranked lists of K = data.list_size
candidates (generated: the reference solution and K − 1 erroneous ones, scored
by how far they get before their first error) against a target q from
`target=`: "top1", "softmax_scores" (τ = objective.target_temperature) or
"ranking" (q_k ∝ 1/rank_k).
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
        arg,
        runlocal=False,
        model_path="",
        loss="dpo_sigmoid",
        beta=0.1,
        precompute=True,
        format="pairs",
        target="top1",
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
    c.data.format = arg.format
    c.objective.target = arg.target
    return c


def sweep(add):
    # Losses that share the β keyword; the SFT start comes from the command line.
    for loss in ("dpo_sigmoid", "ipo_identity", "dpo_hinge"):
        for seed in range(3):
            add(**{"objective.loss": loss, "seed": seed})
