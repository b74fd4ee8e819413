"""The shared benchmark method: sides in turn, medians with spread, the load on record."""

import pytest

from benchmarks import method


def test_sides_run_in_turn_and_medians_make_the_ratio():
    calls = []
    times = {"a": iter([3.0, 1.0, 2.0]), "b": iter([10.0, 30.0, 20.0])}

    def side(name):
        def run():
            calls.append(name)
            return next(times[name])

        return run

    samples = method.interleave({"a": side("a"), "b": side("b")}, repeats=3)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert samples == {"a": [3.0, 1.0, 2.0], "b": [10.0, 30.0, 20.0]}
    start = {"load_avg": 0.2, "cpus": 2, "machine": "2-core x86_64 CPU"}
    line = method.report("x", samples, start=start, ratio=("b", "a"), ratio_key="speedup_vs_b")
    assert line["speedup_vs_b"] == 10.0  # median 20 / median 2
    assert line["a_s_median"] == 2.0 and line["a_s_spread"] == 1.0  # (3 − 1) / 2
    assert line["load_avg_start"] == 0.2 and line["repeats"] == 3 and "load_avg_end" in line


def test_a_busy_machine_is_flagged():
    assert method.is_loaded(1.6, 2) and not method.is_loaded(1.4, 2)
    busy = {"load_avg": 6.5, "cpus": 2, "machine": "2-core x86_64 CPU"}
    assert method.report("x", {"a": [1.0]}, start=busy)["loaded"] is True


def test_the_fastest_thread_count_is_chosen():
    assert method.best_threads(lambda n: {1: 0.4, 2: 0.9}[n]) == 1
    assert method.best_threads(lambda n: {1: 0.9, 2: 0.4}[n]) == 2


def test_seed_aggregate_leaves_out_missing_seeds_and_averages_counts():
    from benchmarks import stages
    from rewardjax.evaluation.aggregates import mean_ci_over_seeds

    per_seed = {
        "f1": [0.5, 0.7, 0.9],
        "auroc": [0.6, float("nan"), 0.8],  # one class only in seed 1
        "gain": [None, None, None],  # a stage that never ran
        "rollouts": [100, 100, 100],
    }
    out = stages.seed_aggregate(per_seed, counts=("rollouts",))
    ci = mean_ci_over_seeds({"f1": [0.5, 0.7, 0.9]}, reps=2000)["f1"]
    assert out["f1"] == ci["mean"] == pytest.approx(0.7)
    assert out["f1_ci95"] == [ci["ci_low"], ci["ci_high"]]
    assert out["auroc"] == pytest.approx(0.7) and out["auroc_per_seed"] == [0.6, None, 0.8]
    assert out["gain"] is None and "gain_ci95" not in out
    assert out["rollouts"] == 100 and "rollouts_ci95" not in out
    rounded = stages.seed_aggregate({"f1": [0.12345, 0.23456]}, digits=2)
    assert rounded["f1_per_seed"] == [0.12, 0.23]
