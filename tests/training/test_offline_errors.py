"""Bad offline input: one-line errors that name the file and line, row, key or tensor."""

import json

import jax
import numpy as np
import pytest

from configs import common, dpo_arithmetic, prm_arithmetic, rm_arithmetic
from rewardjax import models
from rewardjax.data.formats import DataFormatError
from rewardjax.training import offline


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _local(config_module, **data):
    c = config_module.get_config("runlocal=True")
    for k, v in data.items():
        c.data[k] = v
    return c


def test_identical_chosen_and_rejected_names_the_line(tmp_path):
    pairs = _write(
        tmp_path / "pairs.jsonl",
        [
            {"prompt": "Q: 1+2\n", "chosen": "1+2=3\nA: 3", "rejected": "1+2=4\nA: 4"},
            {"prompt": "Q: 2+2\n", "chosen": "2+2=4\nA: 4", "rejected": "2+2=4\nA: 4"},
        ],
    )
    c = _local(rm_arithmetic, train_path=pairs, test_path=pairs)
    with pytest.raises(DataFormatError, match=r"pairs.jsonl:2: chosen and rejected are identical"):
        offline.OfflineTrainer(c, str(tmp_path / "run"))


def test_steps_labels_mismatch_names_the_line(tmp_path):
    steps = _write(
        tmp_path / "steps.jsonl",
        [{"prompt": "Q: 1+2\n", "steps": ["1+2=3", "A: 3"], "labels": [1, 1, 0]}],
    )
    c = _local(prm_arithmetic, train_path=steps, test_path=steps)
    with pytest.raises(DataFormatError, match=r"steps.jsonl:1: 2 steps but 3 labels"):
        offline.OfflineTrainer(c, str(tmp_path / "run"))


def test_label_outside_unit_interval_names_the_line(tmp_path):
    steps = _write(
        tmp_path / "steps.jsonl",
        [
            {"prompt": "Q: 1+2\n", "steps": ["1+2=3", "A: 3"], "labels": [1, 1]},
            {"prompt": "Q: 1+2\n", "steps": ["1+2=3", "A: 3"], "labels": [1, 1.5]},
        ],
    )
    c = _local(prm_arithmetic, train_path=steps, test_path=steps)
    with pytest.raises(
        DataFormatError, match=r"steps.jsonl:2: labels\[1\] = 1.5 is outside \[0, 1\]"
    ):
        offline.OfflineTrainer(c, str(tmp_path / "run"))


def test_missing_step_separator_names_the_record(tmp_path):
    # The whole solution as one step with one label: it was never split at "\n".
    steps = _write(
        tmp_path / "steps.jsonl",
        [
            {"prompt": "Q: 1+2\n", "steps": ["1+2=3", "A: 3"], "labels": [1, 1]},
            {"prompt": "Q: 1+2\n", "steps": ["1+2=3\nA: 3"], "labels": [1]},
        ],
    )
    c = _local(prm_arithmetic, train_path=steps, test_path=steps)
    with pytest.raises(
        ValueError, match=r"steps.jsonl: record 1: step 0 contains the step separator"
    ):
        offline.OfflineTrainer(c, str(tmp_path / "run"))


def test_too_long_completion_names_the_row_and_the_key(tmp_path):
    c = rm_arithmetic.get_config("runlocal=True")
    c.data.completion_length = 8
    with pytest.raises(
        ValueError, match=r"generated train pairs \(chosen\): row 0: .*data.completion_length"
    ):
        offline.OfflineTrainer(c, str(tmp_path / "run"))


def test_reference_with_another_vocabulary(tmp_path):
    other = models.preset("tiny", num_layers=1, vocab_size=160)
    ref_dir = str(tmp_path / "ref")
    models.save_hf(
        ref_dir, other, jax.tree.map(np.asarray, models.init_params(other, jax.random.key(0)))
    )
    c = dpo_arithmetic.get_config("runlocal=True")
    c.reference.path = ref_dir
    with pytest.raises(
        ValueError,
        match=r"reference.path=.*embedding 'embed/embedding' is \[160, 64\] but the policy's is \[128, 64\]",
    ):
        offline.OfflineTrainer(c, str(tmp_path / "run"))


def test_rm_checkpoint_of_the_wrong_head_type_as_an_rl_reward(tmp_path):
    from configs import grpo_arithmetic_prm
    from rewardjax.training import rl

    config = models.preset("tiny", num_layers=1)
    orm_dir = str(tmp_path / "orm")
    models.save_hf(
        orm_dir,
        config,
        jax.tree.map(np.asarray, models.init_params(config, jax.random.key(0), ("lm", "reward"))),
    )
    c = grpo_arithmetic_prm.get_config(f"runlocal=True,prm_path={orm_dir}")
    with pytest.raises(
        ValueError, match=r"rewards.sources.prm_reward \(prm_reward\): .*no 'prm' head"
    ):
        rl.RLTrainer(c, str(tmp_path / "run"))


def test_unknown_kind_and_mismatched_loss(tmp_path):
    c = common.offline_base("rm", runlocal=True)
    c.objective.kind = "ppo"
    with pytest.raises(
        ValueError, match="objective.kind='ppo'; this trainer runs: sft, dpo, rm, prm, implicit_prm"
    ):
        offline.OfflineTrainer(c, str(tmp_path / "a"))
    c = common.offline_base("rm", runlocal=True)
    c.objective.loss = "prm_step_bce"
    with pytest.raises(
        ValueError, match="the rm kind trains on preference pairs with bt_pairwise, bt_tie_aware"
    ):
        offline.OfflineTrainer(c, str(tmp_path / "b"))
    c = dpo_arithmetic.get_config("runlocal=True")
    c.objective.loss = "pair_weights"
    with pytest.raises(ValueError, match="'pair_weights' is the per-pair reduction"):
        offline.OfflineTrainer(c, str(tmp_path / "c"))
