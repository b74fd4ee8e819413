r"""Reproduction: GRPO's length and std normalisation let incorrect responses grow; Dr.GRPO's not.

  python -m experiments.reproduce length_bias --workdir /tmp/repro_length_bias
  python -m experiments.reproduce length_bias --workdir /tmp/r --runlocal --seeds 0  # seconds

Arms, from the shared SFT start (experiments/reproduce.py), on-policy RL on
3-step arithmetic chains (one update per rollout: the ratio is 1, so the
update is the plain policy gradient and the aggregation is all that
differs), 3 seeds each:

  grpo     grpo_group_norm advantages (r − mean)/(std + ε), per-response
           token means averaged over responses (seq_mean_token_mean, 1/|o|)
  dr_grpo  drgrpo_group_center advantages r − mean, per-response token sums
           over a constant C = max_new_tokens (seq_mean_token_sum_norm)

A correct completion is about 27 characters (tokens of the char tokenizer);
rollouts and evaluations may run to 128 tokens, so a response has room to
grow (one that keeps writing past its answer line is graded incorrect: the
answer is read from the last line). Under 1/|o| a long incorrect response
takes a smaller per-token penalty than a short one, which is the bias the
paper names. The compared measure is the mean token length of the incorrect
held-out responses at the last evaluation (200 problems × 8 samples);
the figure plots it, the correct ones' length and pass@1 every 40 steps
(the paper's Fig. 5 is the training-time analogue). The trainer logs only
the overall rollout length, so `measure` reads every rollout from
samples.jsonl (log.num_samples = the whole batch) for the training-time
lengths of correct and incorrect responses, in characters:
train/length_{correct,incorrect}/{first,last}. `summary` gives pass@1 per
arm and grpo − dr_grpo per seed (the paper: similar accuracy).

Size: 160 steps × 16 prompts × 8 samples per run, an evaluation every 40
steps; about 90-120 s a run with its evaluations on a 2-core CPU (longer if
GRPO's incorrect responses do run to the 128-token cap), so the six runs
and the SFT start take about 15-20 minutes.
"""

import json
import os

import numpy as np

from configs import common, grpo_arithmetic
from rewardjax.evaluation.reproduction import Claim

ARMS = ("grpo", "dr_grpo")
MAX_NEW_TOKENS = 128


def _train_lengths(rows: list[dict], run_dir: str) -> dict[str, float]:
    """Training-time lengths (characters) of correct and incorrect rollouts, from samples.jsonl.

    Per step, the mean length of the rows with reward ≥ 0.5 (the 0/1 verifier)
    and of the others; then the mean over the first and the last quarter of
    the steps that have such rows, as `measures` does for a logged curve.
    """
    del rows  # the metrics rows hold only the overall rollout/length_mean
    path = os.path.join(run_dir, "samples.jsonl")
    if not os.path.exists(path):
        return {}
    by_step: dict[int, dict[bool, list[int]]] = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                s = json.loads(line)
                by_step.setdefault(s["step"], {True: [], False: []})[s["reward"] >= 0.5].append(
                    len(s["completion"])
                )
    out: dict[str, float] = {}
    for correct, name in ((True, "correct"), (False, "incorrect")):
        means = [float(np.mean(v[correct])) for _, v in sorted(by_step.items()) if v[correct]]
        if not means:
            continue
        quarter = max(len(means) // 4, 1)
        out[f"train/length_{name}/first"] = float(np.mean(means[:quarter]))
        out[f"train/length_{name}/last"] = float(np.mean(means[-quarter:]))
    return out


def _summary(found: dict) -> dict:
    """Held-out pass@1 and lengths per arm; pass@1 of grpo − dr_grpo per seed."""
    seeds = sorted(set(found["grpo"]) & set(found["dr_grpo"]))
    out: dict = {}
    for arm in ARMS:
        for key in ("eval/pass@1", "eval/length_mean_correct", "train/length_incorrect/last"):
            values = [found[arm][s][key] for s in seeds if key in found[arm][s]]
            if values:
                name = key.replace("eval/", "").replace("/", "_").replace("@", "_at_")
                out[f"{arm}_{name}"] = round(float(np.mean(values)), 4)
    out["pass_at_1_grpo_minus_dr_grpo_per_seed"] = [
        round(found["grpo"][s]["eval/pass@1"] - found["dr_grpo"][s]["eval/pass@1"], 4)
        for s in seeds
    ]
    return out


REPRODUCTION = Claim(
    paper="Understanding R1-Zero-Like Training: A Critical Perspective (Dr. GRPO)",
    claim=(
        "GRPO's per-response length normalisation (1/|o|) and std normalisation bias it "
        "toward longer incorrect responses; Dr. GRPO (no std, a constant normaliser) keeps "
        "incorrect responses from growing at similar accuracy"
    ),
    metric="eval/length_mean_incorrect",
    compare=("grpo", "dr_grpo"),
    direction=+1,
    curves=(
        "eval/length_mean_incorrect",
        "eval/length_mean_correct",
        "rollout/length_mean",
        "eval/pass@1",
    ),
    paper_value=(
        "incorrect-response length keeps growing under GRPO, stays flat under Dr. GRPO, "
        "similar reward (Fig. 5, Qwen2.5-1.5B on MATH)"
    ),
    measure=_train_lengths,
    summary=_summary,
)


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, model_path="", arm="grpo")
    if arg.arm not in ARMS:
        raise ValueError(f"arm={arg.arm!r}; known: {', '.join(ARMS)}")
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    common.reproduction_run(c, steps=160, eval_every=40, num_samples=8, runlocal=arg.runlocal)
    c.rollout.max_new_tokens = c.eval.max_new_tokens = 32 if arg.runlocal else MAX_NEW_TOKENS
    # Every rollout into samples.jsonl: the measure's correct / incorrect lengths.
    c.log.samples_every = 1
    c.log.num_samples = c.rollout.prompts_per_step * c.rollout.group_size
    if arg.arm == "dr_grpo":
        # Dr.GRPO: no std scaling; Σ_t over each response / C, C the generation budget.
        c.advantage = dict(name="drgrpo_group_center", kwargs={})
        c.loss.aggregation = "seq_mean_token_sum_norm"
        c.loss.kwargs.loss_scale_factor = float(c.rollout.max_new_tokens)
    return c


def sweep(add):
    common.arm_sweep(add, ARMS)
