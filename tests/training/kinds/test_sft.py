"""The SFT kind of the offline loop: task or file demonstrations, ASFT's anchor, iterated RAFT."""

import json
import math
import os

import jax
import numpy as np
import pytest

from configs import raft_arithmetic, sft_arithmetic
from rewardjax import models
from rewardjax.data.formats import DataFormatError
from rewardjax.registry import TASKS
from rewardjax.training import offline
from rewardjax.training.config_checks import ConfigError
from rewardjax.training.rollout import decode_completions


def test_sft_runlocal_trains_exports_and_resumes(tmp_path):
    c = sft_arithmetic.get_config("runlocal=True")
    c.checkpoint.async_save = False
    trainer = offline.OfflineTrainer(c, str(tmp_path))
    last = trainer.run()
    assert trainer.step == 4
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        first = json.loads(f.readline())
    # A fresh model is near-uniform over the vocabulary: the token-mean NLL of the
    # first step is ≈ log V (a sum, or a mean over padding too, would be far off).
    log_v = math.log(trainer.model_config.vocab_size)
    assert abs(first["train/nll"] - log_v) < 0.2, (first, log_v)
    # Plain SFT has no other term: the loss is the NLL. Four steps already lower it.
    assert last["train/loss"] == pytest.approx(last["train/nll"], rel=1e-5)
    assert last["train/loss"] < first["train/loss"] - 0.2, (first, last)
    config, params = models.load_hf(str(tmp_path / "hf"))
    assert config.vocab_size == trainer.model_config.vocab_size and "embed" in params
    # A second trainer on the same workdir resumes at step 4, data position included.
    c2 = sft_arithmetic.get_config("runlocal=True")
    c2.steps = 6
    c2.optim.total_steps = 6
    resumed = offline.OfflineTrainer(c2, str(tmp_path))
    assert resumed.step == 4 and resumed.data.get_state()["index"] == 4 * c.batch_size
    resumed.run()
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == [1, 2, 3, 4, 5, 6]


def _local(arg="", **data):
    c = sft_arithmetic.get_config("runlocal=True" + (f",{arg}" if arg else ""))
    c.checkpoint.async_save = False
    c.export_hf = False
    for k, v in data.items():
        c.data[k] = v
    return c


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_sft_from_a_demonstrations_file_trains_on_its_rows(tmp_path):
    task = TASKS.get("arithmetic_chain")(num_steps=3, max_operand=9)
    rows = []
    # Test-split problems: unlike the generated training demonstrations.
    for i in range(12):
        p = task.problem(i, split="test", seed=7)
        rows.append({"prompt": p.prompt, "response": p.reference_completion, "source": "test"})
    c = _local(train_path=_write(tmp_path / "demos.jsonl", rows))
    trainer = offline.OfflineTrainer(c, str(tmp_path / "run"))
    batch, _ = trainer.objective.next_batch()
    # The batch holds the file's responses (EOS-terminated), not generated ones.
    tok = trainer.tokenizer
    texts = decode_completions(tok, batch["tokens"], batch["mask"].sum(-1).astype(int))
    assert set(texts) <= {r["response"] for r in rows} and len(texts) == c.batch_size
    trainer.data.set_state({"index": 0, "seed": c.seed})
    trainer.run()
    metrics = _metrics(tmp_path / "run")
    assert trainer.data.get_state()["index"] == 4 * c.batch_size
    assert metrics[-1]["train/loss"] < metrics[0]["train/loss"] - 0.2, metrics


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "Q: 1+2\n"}, "missing field 'response'"),
        ({"prompt": "Q: 1+2\n", "response": " "}, "response is empty"),
        ({"prompt": "Q: 1+2\n", "response": 3}, "response must be a string"),
    ],
)
def test_bad_demonstration_row_names_file_and_line(tmp_path, row, message):
    good = {"prompt": "Q: 1+2\n", "response": "1+2=3\nA: 3"}
    path = _write(tmp_path / "demos.jsonl", [good, row])
    c = _local(train_path=path)
    with pytest.raises(DataFormatError, match=f"demos.jsonl:2: .*{message}"):
        offline.OfflineTrainer(c, str(tmp_path / "run"))


def test_asft_anchored_starts_as_dft_and_drifts_from_the_initial_policy(tmp_path):
    c = _local("loss=asft_anchored,kl_coef=0.5")
    c.steps = c.optim.total_steps = 3
    trainer = offline.OfflineTrainer(c, str(tmp_path))
    params0 = jax.tree.map(np.asarray, trainer.state.params["policy"])
    batch, _ = trainer.objective.next_batch()
    trainer.data.set_state({"index": 0, "seed": c.seed})
    # DFT's loss on the first batch, by hand from the reference logits [B, T, V].
    logits = np.asarray(batch["ref_logits"], np.float64)
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    logp = np.take_along_axis(logits, batch["tokens"][..., None], -1)[..., 0] - logz
    mask = batch["mask"]
    dft = float(np.sum(-np.exp(logp) * logp * mask) / mask.sum())
    trainer.run()
    metrics = _metrics(tmp_path)
    # Step 0: the policy is its frozen initial copy, so the KL is 0 and the loss is
    # DFT's; the reference logits are the initial policy's own.
    assert abs(metrics[0]["train/kl"]) < 1e-6, metrics[0]
    assert metrics[0]["train/loss"] == pytest.approx(dft, rel=1e-5)
    # The reference stays frozen while the policy moves: the KL grows.
    assert metrics[-1]["train/kl"] > 1e-4, metrics
    assert all(math.isfinite(m["train/loss"]) for m in metrics)
    ref = jax.tree.leaves(trainer.objective.ref_params)
    assert all(np.array_equal(a, b) for a, b in zip(ref, jax.tree.leaves(params0)))


def test_asft_anchored_without_kl_coef_names_the_key(tmp_path):
    c = _local("loss=asft_anchored")
    with pytest.raises(ValueError, match=r"asft_anchored_loss needs objective\.kwargs\.kl_coef$"):
        offline.OfflineTrainer(c, str(tmp_path))


def test_raft_samples_from_the_policy_and_trains_on_the_top_k(tmp_path):
    c = raft_arithmetic.get_config("runlocal=True,top_k=1")
    c.checkpoint.async_save = False
    c.export_hf = False
    c.steps = c.optim.total_steps = 3
    n, prompts, k = c.data.samples_per_prompt, c.data.prompts_per_batch, c.objective.kwargs.top_k
    trainer = offline.OfflineTrainer(c, str(tmp_path))
    params0 = jax.tree.map(np.asarray, trainer.state.params["policy"])
    batch, data_metrics = trainer.objective.next_batch(trainer.state.params["policy"])
    assert batch["tokens"].shape[0] == prompts * n == c.batch_size
    # Rewards are the task's grades of the decoded samples, prompt i's N rows adjacent.
    task, tok = trainer.task, trainer.tokenizer
    problems = [task.problem(i, split="train", seed=c.seed) for i in range(prompts)]
    texts = [tok.decode(row.tolist()) for row in batch["tokens"]]
    grades = [float(task.grade(problems[i // n], t).correct) for i, t in enumerate(texts)]
    np.testing.assert_array_equal(batch["rewards"], grades)
    assert data_metrics["data/reward_mean"] == pytest.approx(np.mean(grades))
    # Exactly top_k rows of each group are trained on.
    kept = batch["mask"].sum(-1) > 0
    assert kept.reshape(prompts, n).sum(-1).tolist() == [k] * prompts
    trainer.run()
    metrics = _metrics(tmp_path)
    assert all(m["train/kept_frac"] == pytest.approx(k / n) for m in metrics)
    # The loss is the kept samples' NLL under the policy: finite, they are its own samples.
    assert all(math.isfinite(m["train/loss"]) for m in metrics)
    assert metrics[0]["train/loss"] == pytest.approx(metrics[0]["train/nll"])
    moved = [
        np.abs(np.asarray(a) - b).max()
        for a, b in zip(jax.tree.leaves(trainer.state.params["policy"]), jax.tree.leaves(params0))
    ]
    assert max(moved) > 0


def test_raft_without_sampling_keys_names_them(tmp_path):
    c = _local()
    c.objective.loss = "raft_reward_ranked"
    c.objective.kwargs = dict(top_k=1)
    with pytest.raises(ConfigError, match=r"set data\.samples_per_prompt, data\.prompts_per_batch"):
        offline.OfflineTrainer(c, str(tmp_path))
    c = raft_arithmetic.get_config("runlocal=True")
    c.batch_size = 6
    with pytest.raises(ConfigError, match=r"batch_size=6 must equal data\.prompts_per_batch"):
        offline.OfflineTrainer(c, str(tmp_path))
