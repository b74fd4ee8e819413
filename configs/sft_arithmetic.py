r"""SFT of a tiny policy from scratch on arithmetic-chain demonstrations.

python -m experiments.train --config configs/sft_arithmetic.py --workdir /tmp/sft
python -m experiments.train --config configs/sft_arithmetic.py:runlocal=True --workdir /tmp/sft_local
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, error_rate=0.0, model_path="")
    c = common.sft_base(runlocal=arg.runlocal)
    c.data.error_rate = arg.error_rate
    c.model.path = arg.model_path
    return c


def sweep(add):
    for error_rate in (0.0, 0.2, 0.4):
        for seed in range(3):
            add(**{"data.error_rate": error_rate, "seed": seed})
