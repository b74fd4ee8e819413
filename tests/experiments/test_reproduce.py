"""experiments/reproduce.py: verdicts from intervals, run measures, and every reproduction end to end."""

import json
import os

import pytest

from configs import common
from experiments import reproduce
from rewardjax.evaluation.reproduction import VERDICTS, Claim, difference_keys, measures, verdict


@pytest.mark.parametrize(
    "ci, direction, margin, expected",
    [
        ([0.01, 0.2], 1, 0.0, "reproduced"),
        ([-0.2, -0.01], 1, 0.0, "not reproduced"),
        ([-0.05, 0.2], 1, 0.0, "inconclusive"),
        # A claimed decrease: the interval below 0 reproduces it.
        ([-0.2, -0.01], -1, 0.0, "reproduced"),
        ([0.01, 0.2], -1, 0.0, "not reproduced"),
        # Significant but smaller than an effect that counts.
        ([0.01, 0.02], 1, 0.05, "not reproduced"),
        ([0.01, 0.2], 1, 0.05, "reproduced"),
        # "No difference beyond ±margin".
        ([-0.03, 0.04], 0, 0.05, "reproduced"),
        ([-0.03, 0.08], 0, 0.05, "inconclusive"),
        ([0.06, 0.2], 0, 0.05, "not reproduced"),
        ([-0.3, -0.06], 0, 0.05, "not reproduced"),
    ],
)
def test_verdict_follows_the_interval(ci, direction, margin, expected):
    assert verdict(ci, direction, margin) == expected


def test_claim_rejects_what_cannot_be_judged():
    kwargs = dict(paper="p", claim="c", metric="m", compare=("a", "b"))
    with pytest.raises(ValueError, match="direction"):
        Claim(**kwargs, direction=2)
    with pytest.raises(ValueError, match="needs a margin"):
        Claim(**kwargs, direction=0)
    with pytest.raises(ValueError, match="margin"):
        Claim(**kwargs, direction=1, margin=-0.1)
    # Without stages a claim starts from the shared SFT start, as model_path.
    (stage,) = Claim(**kwargs, direction=1).stages
    assert (stage.name, stage.arg) == ("start", "model_path")


def test_measures_read_the_last_evaluation_and_the_curves_quarters():
    rows = [{"step": s, "rollout/entropy": float(s)} for s in range(1, 9)]
    rows[3]["eval/pass@1"] = 0.25
    rows[7]["eval/pass@1"], rows[7]["eval/pass@4"] = 0.5, 0.75
    out = measures(rows, ["rollout/entropy"])
    assert out["eval/pass@1"] == 0.5 and out["eval/pass@4"] == 0.75
    assert out["rollout/entropy/first"] == 1.5  # steps 1, 2
    assert out["rollout/entropy/last"] == 7.5  # steps 7, 8
    assert out["rollout/entropy/max"] == 8.0


def test_merge_args_and_set_path():
    assert common.merge_args("arm=a,runlocal=False", "runlocal=True,x=1") == (
        "arm=a,runlocal=True,x=1"
    )
    assert common.arg_items(" arm = a ,, x=1") == {"arm": "a", "x": "1"}
    config = reproduce.load("clip_higher").get_config("runlocal=True")
    reproduce.set_path(config, "loss.kwargs.clip_high", 0.3)
    assert config.loss.kwargs.clip_high == 0.3
    with pytest.raises(KeyError, match="loss.kwargs.clip_hihg"):
        reproduce.set_path(config, "loss.kwargs.clip_hihg", 0.3)


def test_a_run_dir_trained_under_another_config_is_not_reused(tmp_path):
    from rewardjax.training.writers import write_config

    config = reproduce.load("clip_higher").get_config("runlocal=True")
    reproduce.check_same_config(config, str(tmp_path))  # nothing trained there yet
    write_config(config, str(tmp_path))  # what the trainer keeps in its workdir
    reproduce.check_same_config(config, str(tmp_path))
    config.loss.kwargs.clip_high = 0.5
    with pytest.raises(ValueError, match=r"1 keys differ: loss\.kwargs\.clip_high: 0\.2 -> 0\.5"):
        reproduce.check_same_config(config, str(tmp_path))


def test_unknown_reproduction_names_the_known_ones():
    with pytest.raises(ValueError, match="clip_higher"):
        reproduce.load("clip_highr")


@pytest.fixture(scope="module")
def runlocal_start(tmp_path_factory):
    """The shared SFT start at runlocal size, trained once for every reproduction below."""
    claim = Claim(paper="p", claim="c", metric="m", compare=("a", "b"), direction=1)
    workdir = str(tmp_path_factory.mktemp("start"))
    args, _ = reproduce.train_stages(claim, workdir, runlocal=True)
    return args["model_path"]


@pytest.mark.slow
@pytest.mark.parametrize("name", reproduce.known())
def test_every_reproduction_runs_locally(name, tmp_path, runlocal_start):
    # --start replaces the SFT stage only; later stages (reward models) still train.
    line = reproduce.reproduce(name, str(tmp_path), runlocal=True, seeds=[0], start=runlocal_start)
    assert not os.path.exists(tmp_path / "start")
    assert line["bench"] == "reproduction" and line["name"] == name
    assert line["seeds"] == [0] and line["verdict"] in VERDICTS
    assert os.path.getsize(line["figure"]) > 0
    with open(tmp_path / "result.json") as f:
        assert json.load(f) == line
    # The compared difference is the two arms' measures, paired by seed.
    claim = reproduce.load(name).REPRODUCTION
    # Evaluated stages (a reward model's accuracy) report their held-out metrics.
    evaluated = [stage.name for stage in claim.stages if stage.evaluate]
    assert sorted(line.get("stages", {})) == sorted(evaluated)
    assert all(line["stages"][n] for n in evaluated)
    with open(tmp_path / "measures.json") as f:
        found = json.load(f)
    arm, base = claim.compare
    key = claim.metric.replace("/", "_").replace("@", "_at_")
    expected = found[arm]["0"][claim.metric] - found[base]["0"][claim.metric]
    assert line[f"{key}_diff_per_seed"] == [pytest.approx(expected, abs=1e-4)]
    # A second call reuses the finished runs instead of training again.
    mtimes = {p: os.path.getmtime(p) for p in tmp_path.glob("runs/*/metrics.jsonl")}
    assert mtimes
    reproduce.reproduce(name, str(tmp_path), runlocal=True, seeds=[0], start=runlocal_start)
    assert {p: os.path.getmtime(p) for p in mtimes} == mtimes


def test_difference_keys_pair_arms_by_seed():
    found = {
        "a": {0: {"eval/pass@1": 0.5}, 1: {"eval/pass@1": 0.7}, 2: {"eval/pass@1": 0.9}},
        "b": {0: {"eval/pass@1": 0.25}, 2: {"eval/pass@1": 1.0}},  # seed 1 missing
    }
    out = difference_keys(found, [("a", "b")])
    assert out["a_minus_b_eval_pass_at_1_per_seed"] == [0.25, -0.1]
    assert out["a_minus_b_eval_pass_at_1"] == pytest.approx(0.075)
    assert difference_keys(found, [("a", "c")])["a_minus_c_eval_pass_at_1"] is None


def test_the_command_lists_every_reproduction():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-m", "experiments.reproduce", "--list"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [line.split()[0] for line in out.splitlines()] == reproduce.known()
