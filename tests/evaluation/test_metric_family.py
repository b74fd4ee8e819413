"""Family test: every metric registered by rewardjax.evaluation has a hand-computed case."""

import numpy as np
import pytest

import rewardjax.evaluation  # noqa: F401  (registers the metrics)
from rewardjax.registry import METRICS

# name → (args, kwargs, check(result) -> bool). Each expected value is worked out
# in the comment beside it.
CASES = {
    # 1 - C(3,2)/C(4,2) = .5
    "pass_at_k": ((4, 1), {"k": 2}, lambda r: r == pytest.approx(0.5)),
    # (2/4 + 3/3)/2 = .75
    "avg_at_n": (([[1, 0, 0, 1], [1, 1, 1]],), {}, lambda r: r == pytest.approx(0.75)),
    # majority 1 is right on problem 0, majority 4 wrong on problem 1
    "maj_at_k": (([[1, 1, 2], [3, 4, 4]], [[1, 1, 0], [1, 0, 0]]), {"k": 3}, lambda r: r == 0.5),
    # 1>0 yes, 2=2 no → .5
    "rm_pairwise_accuracy": (([1.0, 2.0], [0.0, 2.0]), {}, lambda r: r == 0.5),
    # 4 > 3 yes; 1 > 2 no → .5
    "best_of_4_accuracy": (([4.0, 1.0], [[1, 2, 3], [2, 0, 0]]), {}, lambda r: r == 0.5),
    # both first errors found → F1 1
    "processbench_f1": (([[0.9, 0.1], [0.8, 0.7]], [1, -1]), {}, lambda r: r["f1"] == 1.0),
    # correct steps .9 .7 above erroneous .1 → 1
    "step_auroc": (([[0.9, 0.1], [0.7]], [[1, 0], [1]]), {}, lambda r: r == 1.0),
    # q ≡ c → 0
    "calibration": (([0.0, 1.0], [0, 1]), {}, lambda r: r == {"brier": 0.0, "ece": 0.0}),
    # scores ordered like correctness → AUROC 1
    "score_correctness_correlation": (([0.2, 0.8], [0, 1]), {}, lambda r: r["auroc"] == 1.0),
    # lengths 2, 4 → mean 3
    "length_stats": (([2, 4],), {}, lambda r: r["length_mean"] == 3.0),
    # IQM(1..8) = 4.5
    "rliable_aggregates": (
        (np.arange(1.0, 9.0).reshape(4, 2),),
        {"reps": 20},
        lambda r: r["iqm"]["estimate"] == pytest.approx(4.5),
    ),
}


def test_every_registered_metric_has_a_hand_case_and_a_documented_formula():
    ours = [
        name
        for name in METRICS.names()
        if METRICS.get(name).__module__.startswith("rewardjax.evaluation")
    ]
    assert set(ours) == set(CASES)
    for name in ours:
        fn = METRICS.get(name)
        args, kwargs, check = CASES[name]
        assert check(fn(*args, **kwargs)), name
        doc = fn.__doc__
        assert doc.splitlines()[0].strip(), name
        assert "Args:" in doc and "Returns:" in doc, name
