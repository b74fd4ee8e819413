"""Accuracy against compute for test-time methods: votes, best-of-N and PRM-guided search.

  points = search_curves(expander, prm.step_scores, task, problems, rng=key,
                         policy_config=config, scorer_config=prm.config, max_n=16)
  print(format_search_table(points)); plot_search(points, "search.png")

Every method reports, per held-out problem, whether its answer is correct,
the policy tokens it generated and the forward FLOPs it spent (the policy's
prefill and decode, the scorer's passes: `rewardjax.inference.compute`).

The sampled methods (majority vote, best-of-N by PRM, PRM-weighted vote,
confidence-weighted vote) are read off one best-of-`max_n` run: for each
N, random subsets of N of a problem's candidates, their accuracy and compute
averaged (as `accuracy_vs_n`). The step-level methods (beam search, greedy
step search, early rejection, Refined-BoN) run once per setting.
`compute_matched` puts a reference method's accuracy beside each point at
equal generated tokens (or FLOPs), interpolated on a log scale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from rewardjax.inference import search as search_lib
from rewardjax.inference.compute import causal_pairs, forward_flops, scorer_flops, search_flops
from rewardjax.inference.selection import (
    _vote,
    answer_classes,
    candidate_subsets,
    confidence_weights,
    default_ns,
)
from rewardjax.training.rollout import encode_prompt

__all__ = [
    "SearchPoint",
    "compute_matched",
    "format_search_table",
    "interpolate_log",
    "plot_search",
    "sampled_points",
    "search_curves",
    "search_points",
]

# Methods read off the best-of-N pool, and the step-level searches.
SAMPLED = ("majority_vote", "best_of_n", "weighted_vote", "confidence_vote")
SEARCHES = ("beam_search", "greedy_step", "early_rejection", "refined_bon")


@dataclasses.dataclass(frozen=True)
class SearchPoint:
    """One method at one setting, per problem.

    Attributes:
      method: one of SAMPLED or SEARCHES.
      setting: its budget, e.g. "N=8", "W=2,M=4", "N=16,keep=0.25".
      correct: [P] 1 if the answer is correct (the mean over subsets for sampled methods).
      tokens: [P] policy tokens generated.
      flops: [P] forward FLOPs, policy and scorer.
    """

    method: str
    setting: str
    correct: np.ndarray
    tokens: np.ndarray
    flops: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct))

    def summary(self) -> dict[str, Any]:
        return dict(
            method=self.method,
            setting=self.setting,
            accuracy=self.accuracy,
            tokens=float(np.mean(self.tokens)),
            flops=float(np.mean(self.flops)),
        )


def _grade(task, problems, tokenizer, pools) -> tuple[list[list[Any]], list[np.ndarray]]:
    """Answers and 0/1 correctness of every pooled candidate, by the task's grader."""
    answers, correct = [], []
    for problem, pool in zip(problems, pools):
        grades = [task.grade(problem, tokenizer.decode(c.tokens)) for c in pool]
        answers.append([g.answer for g in grades])
        correct.append(np.array([float(g.correct) for g in grades]))
    return answers, correct


def sampled_points(
    result,  # SearchResult of best_of_n(n=max_n)
    task,
    problems: Sequence[Any],
    tokenizer,
    *,
    policy_config,
    scorer_config=None,
    ns: Sequence[int] | None = None,
    num_subsets: int = 50,
    seed: int = 0,
    confidences: Sequence[Sequence[float | None]] | None = None,
) -> list[SearchPoint]:
    """Majority vote, best-of-N and the weighted votes at each N, from one best-of-n pool.

    For each problem and N, `num_subsets` random subsets of N of its n
    candidates (all of them when fewer): accuracy, generated tokens and FLOPs
    averaged over the subsets. Majority and confidence votes cost the policy
    only (a stated confidence is in the text; LaSeR's self-reward is one more
    decode position, left out); best-of-N and the PRM-weighted vote add the
    scorer's pass over each candidate.
    """
    answers, correct = _grade(task, problems, tokenizer, result.pools)
    n = min(len(pool) for pool in result.pools)
    ns = tuple(ns or default_ns(n))
    rng = np.random.default_rng(seed)
    methods = ["majority_vote", "best_of_n", "weighted_vote"]
    if confidences is not None:
        methods.append("confidence_vote")
    acc = {m: np.zeros((len(ns), len(problems))) for m in methods}
    tokens = np.zeros((len(ns), len(problems)))
    policy_flops = np.zeros((len(ns), len(problems)))
    scoring = np.zeros((len(ns), len(problems)))
    for p, pool in enumerate(result.pools):
        prompt = int(result.prompt_tokens[p])
        lengths = np.array([len(c.tokens) for c in pool], np.float64)
        scores = np.array([c.score for c in pool])
        weights = np.clip(scores, 0.0, None)
        classes = answer_classes(answers[p])
        conf = None if confidences is None else confidence_weights(confidences[p])
        # Per candidate: its decode FLOPs, and the scorer's pass over prompt + candidate.
        decode = forward_flops(
            policy_config, tokens=lengths, attended=causal_pairs(prompt, lengths)
        )
        scored = scorer_flops(
            scorer_config, tokens=prompt + lengths, attended=causal_pairs(0, prompt + lengths)
        )
        prefill = forward_flops(policy_config, tokens=prompt, attended=causal_pairs(0, prompt))
        truth = correct[p]
        for j, size in enumerate(ns):
            subsets = candidate_subsets(len(pool), size, num_subsets=num_subsets, rng=rng)
            for s in subsets:
                acc["majority_vote"][j, p] += truth[s[_vote(classes[s], np.ones(size))]]
                acc["best_of_n"][j, p] += truth[s[int(np.argmax(scores[s]))]]
                acc["weighted_vote"][j, p] += truth[s[_vote(classes[s], weights[s])]]
                if conf is not None:
                    acc["confidence_vote"][j, p] += truth[s[_vote(classes[s], conf[s])]]
                tokens[j, p] += lengths[s].sum()
                policy_flops[j, p] += prefill + decode[s].sum()
                scoring[j, p] += scored[s].sum()
            k = len(subsets)
            for m in methods:
                acc[m][j, p] /= k
            tokens[j, p] /= k
            policy_flops[j, p] /= k
            scoring[j, p] /= k
    points = []
    for j, size in enumerate(ns):
        for m in methods:
            uses_scorer = m in ("best_of_n", "weighted_vote")
            flops = policy_flops[j] + (scoring[j] if uses_scorer else 0.0)
            points.append(SearchPoint(m, f"N={size}", acc[m][j], tokens[j], flops))
    return points


def _search_point(method, setting, result, task, problems, policy_config, scorer_config):
    correct = np.array(
        [float(task.grade(p, text).correct) for p, text in zip(problems, result.texts)]
    )
    flops = search_flops(result, policy_config, scorer_config)
    return SearchPoint(method, setting, correct, result.generated_tokens.astype(np.float64), flops)


def search_points(
    expander,
    scorer,
    task,
    problems: Sequence[Any],
    *,
    rng: jax.Array,
    policy_config,
    scorer_config=None,
    beams: Sequence[tuple[int, int]] = ((1, 4), (2, 2), (2, 4), (4, 4)),
    max_steps: int = 8,
    early: Sequence[tuple[int, float]] = ((8, 0.25), (16, 0.25)),
    early_key: jax.Array | None = None,
    early_prefix_tokens: int | None = None,
    refine: Sequence[tuple[int, float, int]] = ((4, 0.5, 1),),
    aggregation: str = "min",
) -> list[SearchPoint]:
    """Beam (W, M) / greedy step (W = 1) search, early rejection (N, keep) and Refined-BoN (N, τ, R).

    Early rejection samples with `early_key` when given (the key of a
    best-of-N pool it should be paired with).
    """
    prompts = _encode(expander.tokenizer, problems)
    texts = [p.prompt for p in problems]
    common = dict(prompt_texts=texts, aggregation=aggregation)
    args = (task, problems, policy_config, scorer_config)
    points = []
    for i, (width, m) in enumerate(beams):
        result = search_lib.beam_search(
            expander,
            scorer,
            prompts,
            rng=jax.random.fold_in(rng, 100 + i),
            beam_width=width,
            expansions=m,
            max_steps=max_steps,
            **common,
        )
        method = "greedy_step" if width == 1 else "beam_search"
        points.append(_search_point(method, f"W={width},M={m}", result, *args))
    for i, (n, keep) in enumerate(early):
        result = search_lib.early_rejection(
            expander,
            scorer,
            prompts,
            rng=early_key if early_key is not None else jax.random.fold_in(rng, 200 + i),
            n=n,
            keep_fraction=keep,
            prefix_tokens=early_prefix_tokens,
            **common,
        )
        points.append(_search_point("early_rejection", f"N={n},keep={keep}", result, *args))
    for i, (n, threshold, rounds) in enumerate(refine):
        result = search_lib.refined_best_of_n(
            expander,
            scorer,
            prompts,
            rng=jax.random.fold_in(rng, 300 + i),
            n=n,
            threshold=threshold,
            rounds=rounds,
            **common,
        )
        points.append(
            _search_point("refined_bon", f"N={n},tau={threshold},R={rounds}", result, *args)
        )
    return points


def search_curves(
    expander,
    scorer,
    task,
    problems: Sequence[Any],
    *,
    rng: jax.Array,
    policy_config,
    scorer_config=None,
    max_n: int = 16,
    ns: Sequence[int] | None = None,
    num_subsets: int = 50,
    seed: int = 0,
    confidence=None,
    beams: Sequence[tuple[int, int]] = ((1, 4), (2, 2), (2, 4), (4, 4)),
    max_steps: int = 8,
    early: Sequence[float] = (0.25, 0.5),
    early_prefix_tokens: int | None = None,
    refine: Sequence[tuple[int, float, int]] = ((4, 0.5, 1),),
    aggregation: str = "min",
) -> list[SearchPoint]:
    """Every method on the same held-out problems: the sampled curves, then the searches.

    One best-of-`max_n` pool (key fold_in(rng, 0)) gives the sampled methods
    at N = 1, 2, 4, ..., max_n. Early rejection runs at N = max_n with the
    pool's key for each keep fraction in `early`, so its kept candidates are
    exactly pool candidates and its saving against best-of-max_n is paired.

    Args:
      expander: `PolicyExpander` (or any `Expander`).
      scorer: `step_scores(prompts, steps)` of a PRM.
      task: grades the answers; problems: held-out problems.
      policy_config, scorer_config: ModelConfigs for the FLOPs estimate.
      confidence: the confidence vote's weights: "stated" (RLCR tags), a
        self-scorer with `scores(prompts, completions)` (LaSeR), or None.
      beams, max_steps, early_prefix_tokens, refine, aggregation: as `search_points`.

    Returns:
      SearchPoints, sampled methods first.
    """
    from rewardjax.evaluation.scorers import self_confidences

    prompts = _encode(expander.tokenizer, problems)
    texts = [p.prompt for p in problems]
    pool_key = jax.random.fold_in(rng, 0)
    pool = search_lib.best_of_n(
        expander,
        scorer,
        prompts,
        rng=pool_key,
        n=max_n,
        aggregation=aggregation,
        prompt_texts=texts,
    )
    confidences = None
    if confidence is not None:
        completions = [[expander.tokenizer.decode(c.tokens) for c in row] for row in pool.pools]
        flat = self_confidences(
            confidence,
            [t for t, row in zip(texts, completions) for _ in row],
            [t for row in completions for t in row],
        )
        confidences, i = [], 0
        for row in completions:
            confidences.append(flat[i : i + len(row)])
            i += len(row)
    points = sampled_points(
        pool,
        task,
        problems,
        expander.tokenizer,
        policy_config=policy_config,
        scorer_config=scorer_config,
        ns=ns,
        num_subsets=num_subsets,
        seed=seed,
        confidences=confidences,
    )
    points += search_points(
        expander,
        scorer,
        task,
        problems,
        rng=rng,
        policy_config=policy_config,
        scorer_config=scorer_config,
        beams=beams,
        max_steps=max_steps,
        early=[(max_n, keep) for keep in early],
        early_key=pool_key,
        early_prefix_tokens=early_prefix_tokens,
        refine=refine,
        aggregation=aggregation,
    )
    return points


def _encode(tokenizer, problems) -> list[list[int]]:
    return [encode_prompt(tokenizer, p) for p in problems]


def interpolate_log(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """y at x on the curve (xs, ys), linear in log x; None outside [min xs, max xs]."""
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    order = np.argsort(xs)
    xs, ys = xs[order], ys[order]
    if x < xs[0] or x > xs[-1]:
        return None
    return float(np.interp(np.log(x), np.log(xs), ys))


def compute_matched(
    points: Sequence[SearchPoint], reference: str, *, compute: str = "tokens"
) -> dict[tuple[str, str], float | None]:
    """{(method, setting): accuracy of `reference` at the point's compute}, interpolated.

    `compute` is "tokens" (generated) or "flops"; None where the point's
    compute lies outside the reference curve (no extrapolation).
    """
    curve = [p for p in points if p.method == reference]
    if not curve:
        raise ValueError(f"no {reference!r} points; methods: {sorted({p.method for p in points})}")
    xs = [float(np.mean(getattr(p, compute))) for p in curve]
    ys = [p.accuracy for p in curve]
    return {
        (p.method, p.setting): interpolate_log(xs, ys, float(np.mean(getattr(p, compute))))
        for p in points
    }


def format_search_table(points: Sequence[SearchPoint], references=("best_of_n", "majority_vote")):
    """method | setting | tokens | GFLOPs | accuracy | each reference at equal tokens."""
    matched = {
        r: compute_matched(points, r) for r in references if any(p.method == r for p in points)
    }
    head = ["method", "setting", "tokens", "GFLOPs", "accuracy"] + [f"{r}@tokens" for r in matched]
    rows = []
    for p in sorted(points, key=lambda p: (p.method, float(np.mean(p.tokens)))):
        row = [p.method, p.setting, f"{np.mean(p.tokens):.1f}", f"{np.mean(p.flops) / 1e9:.4f}"]
        row.append(f"{p.accuracy:.4f}")
        for r in matched:
            v = matched[r][p.method, p.setting]
            row.append("-" if v is None else f"{v:.4f}")
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def plot_search(points: Sequence[SearchPoint], path: str) -> None:
    """Accuracy against generated tokens per problem (log scale), one line per method; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, compute, label in (
        (axes[0], "tokens", "generated tokens per problem"),
        (axes[1], "flops", "forward FLOPs per problem (policy + scorer)"),
    ):
        for method in dict.fromkeys(p.method for p in points):
            mine = sorted(
                (p for p in points if p.method == method),
                key=lambda p: float(np.mean(getattr(p, compute))),
            )
            xs = [float(np.mean(getattr(p, compute))) for p in mine]
            ax.plot(xs, [p.accuracy for p in mine], marker="o", label=method)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
