r"""Test-time search at a documented scale: PRM beam search, early rejection, Refined-BoN, votes.

  python -m benchmarks.search --workdir /tmp/bench_search --seeds 0,1,2
  python -m benchmarks.search --workdir /tmp/bench_search --part speed   # on a quiet machine

Scale (as benchmarks/reward_models.py: arithmetic_chain, num_steps=3,
operands 1..9, the `tiny` preset with four layers, char vocabulary):
  SFT policy    600 steps × 64 demonstrations (30% with a wrong step), lr 3e-3
  PRM           2000 steps on step-labelled solutions (50% erroneous), from
                SFT, lr 5e-4; one per seed
Each seed draws its own held-out problems (test split, `--problems` of
them) and sampling keys, and scores with its own PRM (min aggregation,
steps at "\n", temperature 1). Per seed:
  * one best-of-16 pool gives majority vote, best-of-N by PRM and the
    PRM-weighted vote at N = 1, 2, 4, 8, 16 (subset averages);
  * PRM beam search at (W, M) = (1, 4) greedy, (2, 2), (2, 4), (4, 2), up to
    8 expansion rounds;
  * early rejection at N = 16 with the pool's key (its kept candidates are
    pool candidates: a paired comparison), keep 1/4 and 1/2, rejected after
    the first step;
  * Refined-BoN at N = 4, τ = 0.5, one and two rounds.
Compute is generated policy tokens per problem (the FLOPs estimate of
`rewardjax.inference.compute` is in the per-seed tables). A method is
compared with a curve at equal tokens by log-linear interpolation on the
curve (no extrapolation).

The speed part times step-level generation (`rewardjax.sampling.stepwise`
through `PolicyExpander`: prefill, fork, one step per call) against one
`sampling.generate` call on the same rows (16 prompts × 4, 48 new tokens,
the SFT policy; as configured by default, and with its compaction of
finished rows off), interleaved, medians of 7, and checks that the step
sampler compiles nothing after its warm-up.

Prints a JSON line last: bench "search", beam_minus_weighted_vote_at_equal_tokens
and beam_minus_best_of_n_at_equal_tokens (at the beam setting with the largest
mean difference, `_setting` names it; `_ci95` over seeds, rliable bootstrap;
`_per_seed`; and `_by_setting` for every setting), early_rejection_token_saving
(best-of-16 tokens / early-rejection tokens) and early_rejection_accuracy_delta
for the largest saving within one point of best-of-16 (all keep fractions in
`early_rejection`), step_generation_tokens_per_s_ratio (step-level / plain).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stages  # the shared SFT start and cached stages, beside this script

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/rewardjax_bench_search", "Run directory.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds: PRM, held-out problems, sampling.")
_PART = flags.DEFINE_enum("part", "all", ["all", "accuracy", "speed"], "What to run.")
_PROBLEMS = flags.DEFINE_integer("problems", 200, "Held-out problems per seed.")
_SCALE = flags.DEFINE_float("scale", 1.0, "Multiplies the training steps (0.1: a smoke run).")
_SFT_FROM = flags.DEFINE_string(
    "sft_from", "", "A finished SFT stage directory to copy in (the same sft_start_config)."
)
_FRESH = flags.DEFINE_bool("fresh", False, "Delete the workdir first.")

MAX_N = 16
BEAMS = ((1, 4), (2, 2), (2, 4), (4, 2))
EARLY = (0.25, 0.5)
REFINE = ((4, 0.5, 1), (4, 0.5, 2))
MAX_STEPS = 8
MAX_NEW_TOKENS = 48
TASK = dict(num_steps=3, max_operand=9)
# Where the seed papers put these methods (for the table beside ours).
PAPER = {
    "beam": "Snell et al. 2024: PRM beam search beats best-of-N at low budgets, "
    "up to ~4x less compute at equal accuracy on MATH; the gap closes at high budgets",
    "early_rejection": "Early rejection with partial reward models: 1.4-9x fewer "
    "FLOPs at equal accuracy",
}


def _prm_config(sft_hf: str, seed: int):
    from configs import prm_arithmetic

    c = stages.schedule(
        prm_arithmetic.get_config(f"model_path={sft_hf}"),
        stages.scaled_steps(2000, _SCALE.value),
        5e-4,
        seed,
    )
    c.data.num_train = 16384
    c.data.num_test = 500
    c.eval.num_records = 500
    return c


def _models(seed: int, cpu: dict):
    """The SFT policy (shared) and this seed's PRM, trained once in the workdir."""
    workdir = _WORKDIR.value
    sft_dir = os.path.join(workdir, "sft")
    if _SFT_FROM.value and not os.path.exists(os.path.join(sft_dir, "eval.json")):
        shutil.copytree(_SFT_FROM.value, sft_dir, dirs_exist_ok=True)
    sft_eval = stages.train_stage(
        workdir, "sft", stages.sft_start_config(stages.scaled_steps(600, _SCALE.value), 0), cpu
    )
    sft_hf = os.path.join(sft_dir, "hf")
    prm_eval = stages.train_stage(workdir, f"prm_seed{seed}", _prm_config(sft_hf, seed), cpu)
    return sft_hf, sft_eval, os.path.join(workdir, f"prm_seed{seed}", "hf"), prm_eval


def _seed_points(seed: int, cpu: dict) -> list[dict]:
    """Every method's per-problem results on this seed's held-out problems (cached)."""
    import jax

    from rewardjax import models, scoring
    from rewardjax.evaluation import search_curves as curves
    from rewardjax.inference.search import PolicyExpander
    from rewardjax.registry import TASKS
    from rewardjax.tokenizers import load_tokenizer

    sft_hf, _, prm_hf, _ = _models(seed, cpu)

    def run():
        task = TASKS.get("arithmetic_chain")(**TASK)
        problems = task.problems(0, _PROBLEMS.value, split="test", seed=1000 + seed)
        config, params = models.load_hf(sft_hf)
        tok = load_tokenizer("char")
        prm = scoring.ProcessRewardModel.load(prm_hf, tokenizer="char", batch_size=256)
        expander = PolicyExpander(
            config,
            jax.tree.map(np.asarray, params),
            tok,
            separator="\n",
            max_new_tokens=MAX_NEW_TOKENS,
            max_step_tokens=24,
            max_rows=256,
        )
        points = curves.search_curves(
            expander,
            prm.step_scores,
            task,
            problems,
            rng=jax.random.key(seed),
            policy_config=config,
            scorer_config=prm.config,
            max_n=MAX_N,
            num_subsets=50,
            seed=seed,
            beams=BEAMS,
            max_steps=MAX_STEPS,
            early=EARLY,
            refine=REFINE,
        )
        print(curves.format_search_table(points), flush=True)
        curves.plot_search(points, os.path.join(_WORKDIR.value, f"search_seed{seed}.png"))
        return {
            "points": [
                dict(
                    method=p.method,
                    setting=p.setting,
                    correct=p.correct.tolist(),
                    tokens=p.tokens.tolist(),
                    flops=p.flops.tolist(),
                )
                for p in points
            ]
        }

    return stages.cached_stage(_WORKDIR.value, f"search_seed{seed}", run, cpu)["points"]


def _curve(points, method):
    mine = [p for p in points if p["method"] == method]
    return [float(np.mean(p["tokens"])) for p in mine], [float(np.mean(p["correct"])) for p in mine]


def _differences(per_seed: list[list[dict]], reference: str) -> dict[str, list[float | None]]:
    """{beam setting: [accuracy − the reference's at equal tokens, per seed]}."""
    from rewardjax.evaluation.search_curves import interpolate_log

    out: dict[str, list[float | None]] = {}
    for points in per_seed:
        xs, ys = _curve(points, reference)
        for p in points:
            if p["method"] not in ("beam_search", "greedy_step"):
                continue
            at = interpolate_log(xs, ys, float(np.mean(p["tokens"])))
            diff = None if at is None else float(np.mean(p["correct"])) - at
            out.setdefault(p["setting"], []).append(diff)
    return out


def _best(diffs: dict[str, list[float | None]], key: str, result: dict) -> None:
    """The setting with the largest mean difference over seeds, with its interval."""
    from rewardjax.evaluation.aggregates import mean_ci_over_seeds

    complete = {s: v for s, v in diffs.items() if None not in v}
    result[f"{key}_by_setting"] = {s: v for s, v in diffs.items()}
    if not complete:
        result[key] = None
        return
    setting = max(complete, key=lambda s: np.mean(complete[s]))
    row = mean_ci_over_seeds({key: complete[setting]}, reps=2000)[key]
    result[key] = row["mean"]
    result[f"{key}_ci95"] = [row["ci_low"], row["ci_high"]]
    result[f"{key}_per_seed"] = complete[setting]
    result[f"{key}_setting"] = setting


def _early(per_seed: list[list[dict]], result: dict) -> None:
    from rewardjax.evaluation.aggregates import mean_ci_over_seeds

    rows = {}
    for keep in EARLY:
        saving, delta = [], []
        for points in per_seed:
            by = {(p["method"], p["setting"]): p for p in points}
            full = by["best_of_n", f"N={MAX_N}"]
            early = by["early_rejection", f"N={MAX_N},keep={keep}"]
            saving.append(float(np.sum(full["tokens"]) / np.sum(early["tokens"])))
            delta.append(float(np.mean(early["correct"]) - np.mean(full["correct"])))
        ci = mean_ci_over_seeds({"saving": saving, "delta": delta}, reps=2000)
        rows[keep] = dict(
            token_saving=ci["saving"]["mean"],
            token_saving_ci95=[ci["saving"]["ci_low"], ci["saving"]["ci_high"]],
            accuracy_delta=ci["delta"]["mean"],
            accuracy_delta_ci95=[ci["delta"]["ci_low"], ci["delta"]["ci_high"]],
            per_seed=dict(saving=saving, delta=delta),
        )
    result["early_rejection"] = {str(k): v for k, v in rows.items()}
    within = [k for k, v in rows.items() if v["accuracy_delta"] >= -0.01]
    keep = max(within, key=lambda k: rows[k]["token_saving"]) if within else max(EARLY)
    result["early_rejection_keep"] = keep
    result["early_rejection_token_saving"] = rows[keep]["token_saving"]
    result["early_rejection_token_saving_ci95"] = rows[keep]["token_saving_ci95"]
    result["early_rejection_accuracy_delta"] = rows[keep]["accuracy_delta"]
    result["early_rejection_accuracy_delta_ci95"] = rows[keep]["accuracy_delta_ci95"]


def _table(per_seed: list[list[dict]]) -> dict[str, dict[str, float]]:
    """{method setting: mean accuracy, tokens and GFLOPs over seeds}."""
    out: dict[str, dict[str, float]] = {}
    for points in per_seed:
        for p in points:
            row = out.setdefault(
                f"{p['method']} {p['setting']}", dict(acc=[], tokens=[], gflops=[])
            )
            row["acc"].append(float(np.mean(p["correct"])))
            row["tokens"].append(float(np.mean(p["tokens"])))
            row["gflops"].append(float(np.mean(p["flops"])) / 1e9)
    return {k: {m: round(float(np.mean(v)), 4) for m, v in row.items()} for k, row in out.items()}


def _speed(cpu: dict) -> dict:
    """Step-level generation against one `generate` call on the same rows, interleaved."""
    import jax

    from rewardjax import models, sampling
    from rewardjax.inference.search import PolicyExpander
    from rewardjax.registry import TASKS
    from rewardjax.sampling import stepwise
    from rewardjax.tokenizers import load_tokenizer
    from rewardjax.training.rollout import encode_prompts

    sft_hf, _, _, _ = _models(0, cpu)
    config, params = models.load_hf(sft_hf)
    params = jax.tree.map(np.asarray, params)
    tok = load_tokenizer("char")
    task = TASKS.get("arithmetic_chain")(**TASK)
    problems = task.problems(0, 16, split="test", seed=7)
    prompts = [tok.encode(p.prompt, add_bos=tok.default_add_bos) for p in problems]
    group = 4
    expander = PolicyExpander(
        config, params, tok, separator="\n", max_new_tokens=MAX_NEW_TOKENS, max_step_tokens=24
    )

    def stepped(key):
        state = expander.fork(expander.start(prompts), np.repeat(np.arange(len(prompts)), group))
        rows = len(prompts) * group
        running, tokens, calls = np.ones(rows, bool), 0, 0
        while running.any():
            state, emitted, done = expander.extend(
                state,
                rng=key,
                row_ids=np.arange(rows),
                run=running,
                to_step_end=True,
                max_tokens=None,
            )
            tokens += sum(len(e) for e in emitted)
            running = ~done
            calls += 1
        jax.block_until_ready(state.tokens)
        return tokens, calls

    tokens_p, mask_p = encode_prompts(tok, [p.prompt for p in problems])

    def plain(key, compact_min_rows=8):
        out = sampling.generate(
            config,
            params,
            (tokens_p, mask_p),
            rng=key,
            n=group,
            max_new_tokens=MAX_NEW_TOKENS,
            temperature=1.0,
            eos_ids=tok.stop_ids,
            pad_id=tok.pad_id,
            compact_min_rows=compact_min_rows,
        )
        return int(np.asarray(out.lengths).sum()), 1

    def uncompacted(key):  # every row stays in the batch to the end, as in the step loop
        return plain(key, compact_min_rows=0)

    sides = (("step", stepped), ("plain", plain), ("uncompacted", uncompacted))
    for k in range(2):  # warm-up: every compile
        for _, fn in sides:
            fn(jax.random.key(k))
    compiled = stepwise._extend_jit._cache_size()
    rates: dict[str, list[float]] = {name: [] for name, _ in sides}
    calls = []
    for k in range(7):
        for name, fn in sides:
            start = time.perf_counter()
            tokens, n_calls = fn(jax.random.key(100 + k))
            rates[name].append(tokens / (time.perf_counter() - start))
            if name == "step":
                calls.append(n_calls)
    step, base = statistics.median(rates["step"]), statistics.median(rates["plain"])
    whole = statistics.median(rates["uncompacted"])
    return dict(
        step_tokens_per_s=step,
        plain_tokens_per_s=base,
        step_generation_tokens_per_s_ratio=step / base,
        # generate drops finished rows from its batch (compact_min_rows); without that:
        plain_uncompacted_tokens_per_s=whole,
        step_vs_uncompacted_ratio=step / whole,
        step_calls_median=statistics.median(calls),
        step_compiles_after_warmup=stepwise._extend_jit._cache_size() - compiled,
        speed_rows=len(prompts) * group,
        load_average=os.getloadavg()[0],
    )


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import rewardjax.objectives  # noqa: F401

    if _FRESH.value:
        shutil.rmtree(_WORKDIR.value, ignore_errors=True)
    os.makedirs(_WORKDIR.value, exist_ok=True)
    cpu: dict[str, float] = {}
    seeds = [int(s) for s in _SEEDS.value]
    result: dict = {"bench": "search", "seeds": seeds, "scale": _SCALE.value}
    if _PART.value in ("all", "accuracy"):
        per_seed = [_seed_points(seed, cpu) for seed in seeds]
        _best(
            _differences(per_seed, "weighted_vote"),
            "beam_minus_weighted_vote_at_equal_tokens",
            result,
        )
        _best(_differences(per_seed, "best_of_n"), "beam_minus_best_of_n_at_equal_tokens", result)
        _best(
            _differences(per_seed, "majority_vote"),
            "beam_minus_majority_vote_at_equal_tokens",
            result,
        )
        _early(per_seed, result)
        result["table"] = _table(per_seed)
        result["problems_per_seed"] = _PROBLEMS.value
    if _PART.value in ("all", "speed"):
        result.update(_speed(cpu))
    result["paper"] = PAPER
    result["cpu_s"] = {k: round(v, 1) for k, v in cpu.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
