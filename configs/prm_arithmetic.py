r"""A process reward model on arithmetic-chain solutions with exact step labels.

  python -m experiments.train --config configs/prm_arithmetic.py:model_path=/tmp/sft/hf --workdir /tmp/prm
  python -m experiments.train --config configs/prm_arithmetic.py:runlocal=True --workdir /tmp/prm_local
  # The implicit PRM: a causal LM trained on outcomes, π_ref = the SFT start
  python -m experiments.train \
      --config configs/prm_arithmetic.py:kind=implicit_prm,model_path=/tmp/sft/hf --workdir /tmp/iprm

Half of the generated solutions carry one wrong step that propagates; the
step checker labels every line (1 up to the first error, 0 from it on). The
PRM head reads each step's last token (the "\n" separator, the EOS for the
answer line); the implicit PRM reads σ(Q_s) with Q_s = Σ_{t ≤ end of s}
β·log π_ψ/π_ref. Held-out evaluation: ProcessBench F1 of the first-error
prediction, step AUROC and calibration.
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(
        arg, runlocal=False, kind="prm", model_path="", last_step_only=False, error_rate=0.5
    )
    if arg.kind not in ("prm", "implicit_prm"):
        raise ValueError(f"kind={arg.kind!r}; known: prm, implicit_prm")
    c = common.offline_base(arg.kind, runlocal=arg.runlocal)
    c.model.path = arg.model_path
    if arg.kind == "prm":
        c.objective.kwargs.last_step_only = arg.last_step_only
    c.data.error_rate = arg.error_rate
    return c


def sweep(add):
    for variant in ({}, {"objective.kwargs.last_step_only": True}, {"data.error_rate": 0.25}):
        for seed in range(3):
            add(**variant, seed=seed)
