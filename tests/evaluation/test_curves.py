"""Curves of finished runs: metrics rows, one key's curve, the mean over seeds."""

import json

from rewardjax.evaluation.curves import curve, mean_curve, read_rows


def test_read_rows_and_curve_keep_the_steps_that_logged_a_number(tmp_path):
    assert read_rows(str(tmp_path)) == []
    rows = [
        {"step": 1, "loss": 2.0},
        {"step": 2, "loss": 1.0, "eval/pass@1": 0.25},
        {"step": 3, "eval/pass@1": "n/a"},
        {"step": 4, "eval/pass@1": 1},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert read_rows(str(tmp_path)) == rows
    assert curve(rows, "eval/pass@1") == ([2, 4], [0.25, 1.0])
    assert curve(rows, "missing") == ([], [])


def test_mean_curve_cuts_to_the_shortest_run():
    runs = [([1, 2, 3], [1.0, 2.0, 3.0]), ([1, 2], [3.0, 4.0]), ([], [])]
    assert mean_curve(runs) == ([1, 2], [2.0, 3.0])
    assert mean_curve([([], [])]) is None
