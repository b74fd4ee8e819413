r"""Evaluate reward models, PRMs and policies on held-out data, and test-time selection.

  # ORM: pairwise accuracy, best-of-4, calibration, correlation (generated held-out data)
  python -m experiments.evaluate --orm=/tmp/rm/hf
  # An ensemble of three ORMs, aggregated by mean − λ·std
  python -m experiments.evaluate --orm=/tmp/rm0/hf,/tmp/rm1/hf,/tmp/rm2/hf --ensemble=mean_minus_std
  # PRM and implicit PRM: ProcessBench F1, step AUROC, calibration
  python -m experiments.evaluate --prm=/tmp/prm/hf --implicit_prm=/tmp/iprm/hf --reference=/tmp/sft/hf
  # Test-time selection: accuracy vs N = 1..64 for each rule, next to pass@N
  python -m experiments.evaluate --policy=/tmp/sft/hf --orm=/tmp/rm/hf --prm=/tmp/prm/hf \
      --metrics=selection --num_problems=100 --max_n=64
  # ... with a generative judge's P(Yes) as the selector (bon_judge, weighted_majority_vote_judge)
  python -m experiments.evaluate --policy=/tmp/sft/hf --judge=/tmp/judge/hf --metrics=selection
  # Test-time search: accuracy against generated tokens and FLOPs, a table and a PNG
  python -m experiments.evaluate --policy=/tmp/sft/hf --prm=/tmp/prm/hf --metrics=search \
      --num_problems=100 --max_n=16 --search_beams=1x4,2x4,4x4 --search_plot=/tmp/search.png
  # JSONL data instead of generated records
  python -m experiments.evaluate --prm=/tmp/prm/hf --steps_data=steps.jsonl
  # Published benchmarks, read from local files
  python -m experiments.evaluate --orm=/tmp/rm/hf --tokenizer= --chat_template \
      --rewardbench=rewardbench/filtered.parquet
  python -m experiments.evaluate --prm=/tmp/prm/hf --tokenizer= \
      --processbench=gsm8k.json,math.json,olympiadbench.json,omnimath.json
  python -m experiments.evaluate --policy=/tmp/grpo/hf --tokenizer= --chat_template \
      --problems_data=gsm8k/test.jsonl --problems_reader=gsm8k --max_n=8 --metrics=pass_at_k

The work is `rewardjax.evaluation.checkpoints.evaluate_and_report`.

Metrics (--metrics, default: every one the given models and data allow; with a
benchmark or problem file, the metrics of those files):
  pairwise_accuracy  ORM (or implicit PRM) on preference pairs, strict
  best_of_4          ORM on 4-response lists with one best (RewardBench 2 style)
  processbench_f1    PRM / implicit PRM first-error F1 against exact step labels
  step_auroc         PRM / implicit PRM step-level AUROC
  calibration        Brier and ECE (ORM: σ(r) vs outcome; PRM: p_s vs step label)
  correlation        score vs true correctness (Pearson, Spearman, AUROC)
  pass_at_k          the policy's held-out pass@k
  selection          majority vote, best-of-N (ORM, PRM min/last/prod/mean) and
                     weighted votes, for N = 1, 2, 4, ..., max_n, with pass@N
  rewardbench        ORM on --rewardbench: subsets, sections, overall score
  rewardbench2       ORM on --rewardbench2: subsets (Ties scored as defined), overall
  processbench       PRMs on --processbench: F1 per subset and their mean
  search             (only when named) majority vote, best-of-N, PRM-weighted and
                     confidence-weighted votes, PRM beam / greedy step search,
                     early rejection and Refined-BoN: accuracy against generated
                     tokens and FLOPs, compute-matched against best-of-N and
                     majority vote
"""

from __future__ import annotations

import json

from absl import app, flags

_ORM = flags.DEFINE_list("orm", [], "ORM directories; several form an ensemble.")
_ENSEMBLE = flags.DEFINE_enum(
    "ensemble", "mean", ["mean", "median", "min", "mean_minus_std"], "Ensemble aggregation."
)
_STD_COEF = flags.DEFINE_float("std_coef", 1.0, "λ of mean − λ·std.")
_PRM = flags.DEFINE_string("prm", "", "PRM directory (head 'prm').")
_IMPLICIT = flags.DEFINE_string("implicit_prm", "", "Implicit PRM directory (a causal LM).")
_JUDGE = flags.DEFINE_string(
    "judge", "", "Generative judge directory: its P(Yes) selects among --policy's samples."
)
_REFERENCE = flags.DEFINE_string("reference", "", "π_ref directory of the implicit PRM.")
_BETA = flags.DEFINE_float("beta", 0.05, "β the implicit PRM was trained with.")
_POLICY = flags.DEFINE_string("policy", "", "Policy directory, for pass_at_k and selection.")
_TOKENIZER = flags.DEFINE_string(
    "tokenizer", "char", "Tokenizer spec; empty: each model directory's own."
)
_METRICS = flags.DEFINE_list("metrics", [], "Metrics to report (default: all that apply).")
_TASK = flags.DEFINE_string(
    "task", "arithmetic_chain", "Procedural task of generated data and problems."
)
_TASK_KWARGS = flags.DEFINE_string(
    "task_kwargs", '{"num_steps": 3, "max_operand": 9}', "Task kwargs (JSON)."
)
_PAIRS = flags.DEFINE_string("pairs_data", "", "JSONL preference pairs (default: generated).")
_RANKED = flags.DEFINE_string("ranked_data", "", "JSONL ranked lists (default: generated).")
_STEPS = flags.DEFINE_string(
    "steps_data", "", "JSONL step-labelled solutions (default: generated)."
)
_NUM_RECORDS = flags.DEFINE_integer(
    "num_records", 500, "Generated held-out records of each format."
)
_ERROR_RATE = flags.DEFINE_float("error_rate", 0.5, "Share of generated solutions with an error.")
_THRESHOLD = flags.DEFINE_float("threshold", 0.5, "τ of the ProcessBench first-error prediction.")
_VALIDATION = flags.DEFINE_string(
    "validation_data",
    "",
    "JSONL step labels on which τ is tuned (default: generated from the train split; 'none': no tuning).",
)
_SEPARATOR = flags.DEFINE_string("separator", "\n", "Step separator.")
_NUM_PROBLEMS = flags.DEFINE_integer(
    "num_problems", 100, "Held-out problems for pass_at_k / selection."
)
_MAX_N = flags.DEFINE_integer("max_n", 64, "Candidates sampled per problem.")
_NUM_SUBSETS = flags.DEFINE_integer("num_subsets", 100, "Subsets per (problem, N).")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 48, "Sampling budget.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Rows per reward-model forward.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the data, the sampling and the subsets.")
_OUTPUT = flags.DEFINE_string("output_json", "", "Also write the results here.")
_PROBLEMS = flags.DEFINE_string(
    "problems_data",
    "",
    "Held-out problems for pass_at_k / selection / search (default: the task's).",
)
_PROBLEMS_READER = flags.DEFINE_string(
    "problems_reader",
    "",
    "Published format of --problems_data: gsm8k, math, math500, humaneval, mbpp.",
)
_CHAT = flags.DEFINE_bool(
    "chat_template", False, "Write prompts with the tokenizer's chat template."
)
_SYSTEM = flags.DEFINE_string("system_prompt", "", "A system message before every prompt.")
_SUFFIX = flags.DEFINE_string("prompt_suffix", "", "Appended to every prompt's last user turn.")
_RB = flags.DEFINE_string(
    "rewardbench", "", "A RewardBench file (JSON, JSONL or Parquet) for the ORM."
)
_RB2 = flags.DEFINE_string("rewardbench2", "", "A RewardBench 2 file for the ORM.")
_PB = flags.DEFINE_list(
    "processbench", [], "ProcessBench files for the PRMs: name=path, or paths named gsm8k.json, ..."
)
_BEAMS = flags.DEFINE_list(
    "search_beams", ["1x4", "2x2", "2x4", "4x4"], "Beam settings WxM (W = 1: greedy step search)."
)
_MAX_STEPS = flags.DEFINE_integer("search_max_steps", 8, "Expansion rounds of the beam search.")
_EARLY = flags.DEFINE_list(
    "search_early", ["0.25", "0.5"], "Keep fractions of early rejection (at N = max_n)."
)
_EARLY_TOKENS = flags.DEFINE_integer(
    "search_early_tokens", 0, "Early rejection's τ in tokens (0: the end of the first step)."
)
_REFINE = flags.DEFINE_list(
    "search_refine", ["4:0.5:1"], "Refined-BoN settings N:threshold:rounds."
)
_AGGREGATION = flags.DEFINE_enum(
    "search_aggregation", "min", ["min", "last", "prod", "mean"], "PRM step aggregation."
)
_PLOT = flags.DEFINE_string("search_plot", "", "PNG of accuracy against tokens and FLOPs.")
_CONFIDENCE = flags.DEFINE_enum(
    "confidence",
    "",
    ["", "stated", "laser"],
    "Weights of the confidence-weighted vote: stated <confidence> tags (RLCR) or the "
    "policy's last-token self-reward (LaSeR; --laser_kl_coef, --laser_ref_constant).",
)
_LASER_BETA = flags.DEFINE_float("laser_kl_coef", 0.1, "β of the LaSeR self-reward.")
_LASER_C = flags.DEFINE_float("laser_ref_constant", 0.0, "c of the LaSeR self-reward.")
_LASER_TOKEN = flags.DEFINE_string(
    "laser_token", "", "t* of the LaSeR self-reward as text (one token; empty: the BOS)."
)


def _search_options() -> dict:
    confidence = {"": None, "stated": "stated"}.get(_CONFIDENCE.value)
    if _CONFIDENCE.value == "laser":
        confidence = {
            "kl_coef": _LASER_BETA.value,
            "ref_constant": _LASER_C.value,
            "token": _LASER_TOKEN.value,
        }
    return dict(
        beams=[tuple(int(x) for x in b.split("x")) for b in _BEAMS.value],
        max_steps=_MAX_STEPS.value,
        early=[float(f) for f in _EARLY.value],
        early_prefix_tokens=_EARLY_TOKENS.value or None,
        refine=[(int(n), float(t), int(r)) for n, t, r in (x.split(":") for x in _REFINE.value)],
        aggregation=_AGGREGATION.value,
        confidence=confidence,
        plot=_PLOT.value,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rewardjax.evaluation.checkpoints import evaluate_and_report

    evaluate_and_report(
        orm_paths=_ORM.value,
        ensemble=_ENSEMBLE.value,
        std_coef=_STD_COEF.value,
        prm_path=_PRM.value,
        implicit_path=_IMPLICIT.value,
        reference=_REFERENCE.value,
        beta=_BETA.value,
        policy_path=_POLICY.value,
        judge_path=_JUDGE.value,
        tokenizer=_TOKENIZER.value,
        metrics=_METRICS.value,
        task_name=_TASK.value,
        task_kwargs=json.loads(_TASK_KWARGS.value),
        pairs_data=_PAIRS.value,
        ranked_data=_RANKED.value,
        steps_data=_STEPS.value,
        num_records=_NUM_RECORDS.value,
        error_rate=_ERROR_RATE.value,
        threshold=_THRESHOLD.value,
        validation_data=_VALIDATION.value,
        separator=_SEPARATOR.value,
        num_problems=_NUM_PROBLEMS.value,
        max_n=_MAX_N.value,
        num_subsets=_NUM_SUBSETS.value,
        max_new_tokens=_MAX_NEW_TOKENS.value,
        temperature=_TEMPERATURE.value,
        batch_size=_BATCH.value,
        seed=_SEED.value,
        search=_search_options(),
        problems_data=_PROBLEMS.value,
        problems_reader=_PROBLEMS_READER.value,
        prompt=dict(chat_template=_CHAT.value, system=_SYSTEM.value, suffix=_SUFFIX.value),
        rewardbench=_RB.value,
        rewardbench2=_RB2.value,
        processbench=_PB.value,
        output_json=_OUTPUT.value,
    )


if __name__ == "__main__":
    app.run(main)
