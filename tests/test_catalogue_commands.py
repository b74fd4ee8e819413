"""docs/catalogue.md: every registered mechanism is listed, and its commands run as written."""

import os
import re
import shlex
import subprocess
import sys

import pytest

from configs import rl_variants
from rewardjax.evaluation.checkpoints import CHECKPOINT_METRICS
from rewardjax.objectives import catalogue

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "catalogue.md")
ROW = re.compile(
    r"^\| `(\w+)` \| .* \| `(python -m experiments\.(?:train|evaluate|sweep) [^`]+)` \|$"
)


def _rows() -> dict[str, str]:
    with open(DOC, encoding="utf-8") as f:
        rows = [ROW.match(line.strip()) for line in f]
    return {m.group(1): m.group(2) for m in rows if m}


def test_every_registered_mechanism_is_on_the_page():
    with open(DOC, encoding="utf-8") as f:
        named = set(re.findall(r"`(\w+)`", f.read()))
    missing = [
        f"{r}.{e.key}"
        for r, _, _ in catalogue.SECTIONS
        for e in catalogue.entries(r)
        if e.key not in named
    ]
    assert not missing, f"docs/catalogue.md lacks {missing}"


def test_every_command_names_a_config_that_exists():
    rows = _rows()
    with open(DOC, encoding="utf-8") as f:
        table_rows = [line for line in f if line.startswith("| `")]
    assert len(rows) == len(table_rows), "a table row without a runnable command"
    for key, command in rows.items():
        if command.startswith("python -m experiments.evaluate"):
            # Metrics, selection rules and searches: evaluated from models the commands above train.
            metrics = re.search(r"--metrics=([\w,]+)", command)
            assert metrics, key
            assert set(metrics.group(1).split(",")) <= set(CHECKPOINT_METRICS), key
            assert "/tmp/rj/" in command, key
            continue
        config = re.search(r"--config (configs/\w+\.py)", command)
        assert config and os.path.exists(os.path.join(ROOT, config.group(1))), key
        assert "runlocal=True" in command and "--workdir /tmp/rj/" in command, key


def _option(command: str, key: str) -> list[str]:
    """The "+"-joined values of configs/rl_variants.py's `key=` in a command."""
    if "configs/rl_variants.py:" not in command:
        return []
    found = re.search(rf"[:,]{key}=([\w+]+)", command)
    return found.group(1).split("+") if found else []


def test_every_rl_variants_reward_and_shaping_option_has_a_command():
    rows = _rows()
    for name in rl_variants.REWARD_FUNCTIONS:
        assert any(name in _option(c, "reward") for c in rows.values()), (
            f"no command of docs/catalogue.md uses reward={name}"
        )
    for name in rl_variants.SHAPING_STEPS:
        assert name in _option(rows.get(name, ""), "shaping"), f"row {name} lacks shaping={name}"


# Every P0 key of the project's mechanism list (mechanisms.md, outside this
# repository), as of this page's writing.
P0_KEYS = (
    "ppo_clip",
    "gspo",
    "cispo",
    "gmpo_geo_mean",
    "reinforce_pg",
    "entropy_bonus",
    "token_mean",
    "seq_mean_token_sum",
    "seq_mean_token_mean",
    "seq_mean_token_sum_norm",
    "tis_rollout_correction",
    "value_loss_clipped",
    "gae",
    "grpo_group_norm",
    "drgrpo_group_center",
    "batch_std_norm",
    "rloo",
    "reinforce_pp",
    "reinforce_pp_baseline",
    "remax",
    "opo_length_baseline",
    "grpo_passk",
    "zero_variance_policy",
    "token_reward_returns",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_straight_through",
    "kl_in_reward",
    "kl_in_loss",
    "adaptive_kl_controller",
    "dpo_sigmoid",
    "dpo_cdpo",
    "dpo_robust",
    "ipo_identity",
    "dpo_hinge",
    "adpo_anchored",
    "pair_weights",
    "sft_nll",
    "dft_prob_weighted",
    "asft_anchored",
    "raft_reward_ranked",
    "bt_pairwise",
    "regression_rm",
    "bt_plus_regression",
    "bt_tie_aware",
    "prm_step_bce",
    "implicit_prm",
    "laser_last_token_mse",
    "rm_ensemble",
    "step_to_token",
    "sum_form_returns",
    "min_form_returns",
    "clip_delta_bounded",
    "pav_progress",
    "prime_combined_rloo",
    "success_gated_process",
    "math_verify_equiv",
    "exact_match",
    "format_think",
    "code_tests_sandbox",
    "dapo_overlong_penalty",
    "correctness_gated_length",
    "par_bounded_centered",
    "logsigmoid_transform",
    "reward_ensemble_agg",
    "reward_noise_flip",
    "rlcr_brier",
    "ref_answer_logprob",
    "rlpr_prob_reward",
    "majority_vote_reward",
    "bon_orm",
    "prm_aggregate",
    "majority_vote",
    "weighted_majority_vote",
    "pass_rate_filter",
    "dynamic_sampling",
    "pass_at_k",
    "avg_at_n",
    "maj_at_k",
    "rm_pairwise_accuracy",
    "best_of_4_accuracy",
    "processbench_f1",
    "calibration",
    "length_stats",
    "rliable_aggregates",
)


@pytest.mark.parametrize("key", P0_KEYS)
def test_every_p0_mechanism_has_a_command(key):
    assert key in _rows(), f"docs/catalogue.md has no command row for the P0 key {key}"


# A sample across sections, run exactly as written (workdir moved under tmp).
SAMPLE = [
    "reinforce_pg",
    "opo_length_baseline",
    "kl_k2",
    "dpo_hinge",
    "pass_rate_filter",
    "success_gated_process",
    "reward_noise_flip",
]


@pytest.mark.parametrize("key", SAMPLE)
@pytest.mark.slow
def test_catalogue_command_runs_as_written(key, tmp_path):
    command = _rows()[key].replace("--workdir /tmp/rj/", f"--workdir {tmp_path}/")
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "experiments.train"]
    out = subprocess.run(
        [sys.executable, *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    workdir = args[args.index("--workdir") + 1].replace("/tmp/rj/", f"{tmp_path}/")
    assert os.path.exists(os.path.join(workdir, "metrics.jsonl"))
