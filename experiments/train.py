r"""Train anything a config file describes.

  python -m experiments.train --config configs/grpo_arithmetic.py --workdir /tmp/grpo
  python -m experiments.train --config configs/grpo_arithmetic.py:runlocal=True \
      --workdir /tmp/grpo_local --config.steps=10

A mistyped key (in the file or on the command line) fails at parse time.
Restarting with the same --workdir resumes from its last checkpoint.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
_THIRD_PARTY_INFO = flags.DEFINE_bool(
    "third_party_info", False, "Also log other libraries' INFO lines (Orbax internals, ...)."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rewardjax import parallel
    from rewardjax.training.checkpoint import ResumeError
    from rewardjax.training.config_checks import ConfigError
    from rewardjax.training.launch import quiet_third_party_info, train_and_evaluate

    if not _THIRD_PARTY_INFO.value:
        quiet_third_party_info()
    from rewardjax.training.prompts import PromptTooLongError

    # Multi-host runs (TPU pods, GPU clusters) connect here; a no-op on one box.
    parallel.initialize_distributed()
    try:
        train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except (ResumeError, ConfigError, PromptTooLongError) as e:
        # A bad value or a workdir this run cannot continue: the message says
        # which key or checkpoint, and what to do.
        print(f"error: {e}", file=sys.stderr, flush=True)
        # At once: the failed reads' pending tasks would otherwise echo their
        # TensorStore errors at interpreter exit. Nothing is left to flush.
        os._exit(1)


if __name__ == "__main__":
    from rewardjax.training.launch import parse_flags

    app.run(main, flags_parser=parse_flags)
