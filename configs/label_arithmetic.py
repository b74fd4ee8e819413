r"""Monte Carlo step labels for arithmetic-chain solutions sampled from an SFT policy.

  # Math-Shepherd: K = 8 rollouts from every step prefix, soft labels
  python -m experiments.label --config configs/label_arithmetic.py:solver_path=/tmp/sft/hf \
      --config.output=/tmp/mc_labels.jsonl
  # OmegaPRM-style binary search for the first error (hard labels, fewer rollouts)
  python -m experiments.label \
      --config configs/label_arithmetic.py:solver_path=/tmp/sft/hf,method=first_error_search \
      --config.output=/tmp/omega_labels.jsonl
  # Hard labels with a threshold: a prefix value ≤ 1/8 is an error (τ tuned on exactly
  # labelled solutions by labeling.tune_threshold; 0 is Math-Shepherd's rule)
  python -m experiments.label \
      --config configs/label_arithmetic.py:solver_path=/tmp/sft/hf,labels=hard \
      --config.threshold=0.125 --config.output=/tmp/hard_labels.jsonl
  # Keep only solutions where a trained PRM agrees on the first error
  python -m experiments.label --config configs/label_arithmetic.py:solver_path=/tmp/sft/hf \
      --config.consensus.prm_path=/tmp/prm/hf --config.output=/tmp/consensus.jsonl
  # Train a PRM on the labels (the PRM trainer reads the JSONL unchanged)
  python -m experiments.train --config configs/prm_arithmetic.py:model_path=/tmp/sft/hf \
      --config.data.train_path=/tmp/mc_labels.jsonl --workdir /tmp/prm_mc

The solver writes `samples_per_problem` solutions per problem; the completer
(the solver unless `completer.path` is set) rolls out K times from each step
prefix. The summary (a JSON line) scores the labels against the task's exact
ones: first-error accuracy and step-label F1.
"""

import ml_collections

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(
        arg, runlocal=False, solver_path="", method="monte_carlo", labels="soft", k=8
    )
    c = ml_collections.ConfigDict()
    c.task = dict(name="arithmetic_chain", kwargs=dict(num_steps=3, max_operand=9))
    c.split = "train"
    c.num_problems = 8 if arg.runlocal else 200
    c.samples_per_problem = 2 if arg.runlocal else 4
    # The policy whose solutions are labelled (an HF directory).
    c.solver = dict(path=arg.solver_path, temperature=1.0, max_new_tokens=48)
    # The rollout policy; empty path: the solver itself (Math-Shepherd's setting).
    c.completer = dict(path="", temperature=1.0, max_new_tokens=48, batch_prefixes=64)
    c.tokenizer = "char"
    # How prompts are written for the solver and the completer (chat template,
    # system, suffix); step prefixes follow the rendered prompt, inside the reply.
    c.prompt = common.prompt_block()
    # "monte_carlo" (every prefix) or "first_error_search" (binary search, hard labels).
    c.method = arg.method
    # "soft": the fraction of correct rollouts; "hard": 1 if any is correct.
    c.labels = "hard" if arg.method == "first_error_search" else arg.labels
    c.k = arg.k
    # A prefix value at most this is an error (first error, and hard labels 1[value >
    # threshold]); 0 is Math-Shepherd's rule. A completer that recovers from wrong
    # steps gives them small positive values: tune it on exactly labelled solutions
    # (labeling.tune_threshold; benchmarks/process_supervision.py does).
    c.threshold = 0.0
    c.separator = "\n"
    # "raise" on a grader exception, or "skip" the solution and count it.
    c.on_grader_error = "raise"
    # Keep a solution only where this PRM's first error (first step below
    # `threshold`) agrees with the labels' ("The Lessons of Developing PRMs").
    c.consensus = dict(prm_path="", threshold=0.5)
    c.output = ""
    c.seed = 0
    return c


def sweep(add):
    for k in (4, 8, 16):
        for seed in range(3):
            add(k=k, seed=seed)
