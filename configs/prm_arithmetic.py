r"""A process reward model on arithmetic-chain solutions with exact step labels.

  python -m experiments.train --config configs/prm_arithmetic.py --workdir /tmp/prm
  python -m experiments.train --config configs/prm_arithmetic.py:runlocal=True --workdir /tmp/prm_local

Half of the generated solutions carry one wrong step that propagates; the
step checker labels every line (1 up to the first error, 0 from it on). The
PRM head reads each step's last token (the "\n" separator, the EOS for the
answer line). Held-out evaluation: ProcessBench F1 of the first-error
prediction, step AUROC and calibration.
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, model_path="", last_step_only=False, error_rate=0.5)
    c = common.offline_base("prm", runlocal=arg.runlocal)
    c.model.path = arg.model_path
    c.objective.kwargs.last_step_only = arg.last_step_only
    c.data.error_rate = arg.error_rate
    return c


def sweep(add):
    for variant in ({}, {"objective.kwargs.last_step_only": True}, {"data.error_rate": 0.25}):
        for seed in range(3):
            add(**variant, seed=seed)
