r"""SFT of a tiny policy from scratch on arithmetic-chain demonstrations.

python -m experiments.train --config configs/sft_arithmetic.py --workdir /tmp/sft
python -m experiments.train --config configs/sft_arithmetic.py:runlocal=True --workdir /tmp/sft_local

From a JSONL file of {"prompt", "response"} rows instead of the task's own:

python -m experiments.train --config configs/sft_arithmetic.py:train_path=/data/demos.jsonl --workdir /tmp/sft

loss= picks the SFT_LOSSES member: sft_nll, dft_prob_weighted, or asft_anchored
(DFT plus λ·KL(π_θ‖π_ref) to the frozen initial policy; λ = kl_coef, required):

python -m experiments.train --config configs/sft_arithmetic.py:loss=asft_anchored,kl_coef=0.05 --workdir /tmp/asft
"""

from configs import common

LOSSES = ("sft_nll", "dft_prob_weighted", "asft_anchored")


def get_config(arg=None):
    arg = common.parse_arg(
        arg,
        runlocal=False,
        error_rate=0.0,
        model_path="",
        train_path="",
        loss="sft_nll",
        kl_coef=None,
    )
    if arg.loss not in LOSSES:
        raise ValueError(
            f"loss={arg.loss!r}; known: {', '.join(LOSSES)} "
            "(raft_reward_ranked: configs/raft_arithmetic.py)"
        )
    c = common.sft_base(runlocal=arg.runlocal)
    c.data.error_rate = arg.error_rate
    c.data.train_path = arg.train_path
    c.model.path = arg.model_path
    c.objective.loss = arg.loss
    # λ has no default: left out, the trainer stops at start naming objective.kwargs.kl_coef.
    if arg.kl_coef is not None:
        c.objective.kwargs.kl_coef = arg.kl_coef
    return c


def sweep(add):
    for error_rate in (0.0, 0.2, 0.4):
        for seed in range(3):
            add(**{"data.error_rate": error_rate, "seed": seed})
