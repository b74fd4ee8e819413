"""The shared benchmark method: sides in turn, medians with spread, the load on record."""

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
