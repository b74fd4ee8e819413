r"""Label the steps of sampled solutions automatically, and write a step-label JSONL.

  python -m experiments.label --config configs/label_arithmetic.py:solver_path=/tmp/sft/hf \
      --config.output=/tmp/mc_labels.jsonl

Prints a JSON summary last: rollouts, prefixes per second, skipped solutions
by reason, and the labels' agreement with the task's exact ones.
"""

import json

from absl import app
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Labelling config file.", lock_config=True
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rewardjax.labeling.run import label_run

    print(json.dumps(label_run(_CONFIG.value), sort_keys=True))


if __name__ == "__main__":
    app.run(main)
