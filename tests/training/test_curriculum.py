"""Curricula in the RL loop: signals, hints, replay, DRIVE, schedules, priority, checkpoints.

Unit tests build a `Curriculum` directly over a fake prompt source and a
hand-filled `PromptStats`; the trainer tests run the tiny runlocal GRPO
config, whose random-init policy fails every group.
"""

import copy
import json

import ml_collections
import numpy as np
import pytest

import rewardjax.data.tasks  # noqa: F401  (registers the procedural tasks)
from configs import common, grpo_arithmetic
from rewardjax.data.curation import PromptStats
from rewardjax.data.tasks.base import Problem
from rewardjax.registry import TASKS
from rewardjax.training import rl
from rewardjax.training.curriculum import (
    Curriculum,
    ReplayBuffer,
    check_curriculum_config,
    group_signal,
    hint_text,
    max_hint_lines,
    top_groups,
)

NAN = float("nan")


# ---------------------------------------------------------------- fixtures


def _problems(n: int) -> list[Problem]:
    return TASKS.get("arithmetic_chain")(num_steps=3).problems(0, n, split="train", seed=0)


class FakeSource:
    """A prompt source over a fixed list: `next()` gives the next `batch` prompts in order."""

    def __init__(self, problems, batch: int, tag=None):
        self._problems = problems
        self.batch = batch
        self.tag = tag
        self.position = 0

    def pool(self):
        return self._problems

    def next(self):
        n = len(self._problems)
        out = [self._problems[(self.position + k) % n] for k in range(self.batch)]
        self.position += self.batch
        return out

    def state(self):
        return {"position": self.position}

    def restore(self, state):
        self.position = state["position"]


def _cfg(**overrides) -> ml_collections.ConfigDict:
    """The config's curriculum block with dotted-key overrides."""
    cfg = copy.deepcopy(common.rl_base(runlocal=True).curriculum)
    cfg.unlock()
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return cfg


def _curriculum(cfg, problems=None, *, prompts=4, group=4, prompt_group=4, made=None):
    """A Curriculum over FakeSource(problems); `made` collects make_source's task configs."""
    problems = _problems(8) if problems is None else problems
    task_cfg = common.rl_base(runlocal=True).task

    def make_source(level_cfg, batch):
        if made is not None:
            made.append(dict(level_cfg.kwargs))
        return FakeSource(problems, batch, tag=len(made) if made is not None else None)

    return Curriculum(
        cfg,
        task_cfg=task_cfg,
        source=FakeSource(
            problems, prompts * cfg.priority.oversample if cfg.priority.enabled else prompts
        ),
        prompts_per_step=prompts,
        group_size=group,
        prompt_group=prompt_group,
        seed=0,
        make_source=make_source,
    )


def _stats(rates: dict[str, tuple[int, int]]) -> PromptStats:
    """PromptStats with `correct` of `samples` for each uid (one group each)."""
    stats = PromptStats()
    for uid, (correct, samples) in rates.items():
        row = np.zeros((1, samples))
        row[0, :correct] = 1.0
        stats.update([uid], row, step=0)
    return stats


# ---------------------------------------------------------------- signals


def test_group_signal_is_p_times_one_minus_p_over_scored_samples():
    correct = np.array(  # [P=6, G=4]
        [
            [1, 0, 1, 0],  # p = 1/2 -> 1/4
            [1, 1, 1, 1],  # p = 1 -> 0
            [0, 0, 0, 0],  # p = 0 -> 0
            [1, NAN, 0, NAN],  # p = 1/2 over 2 scored -> 1/4
            [NAN, NAN, NAN, NAN],  # nothing scored -> 0
            [1, 1, 1, 0],  # p = 3/4 -> 3/16
        ]
    )
    signal = group_signal(correct)
    np.testing.assert_allclose(signal, [0.25, 0.0, 0.0, 0.25, 0.0, 0.1875])
    assert not np.isnan(signal).any()


def test_top_groups_keeps_earlier_groups_on_ties():
    signal = np.array([0.25, 0.0, 0.25, 0.1875, 0.1875])
    assert top_groups(signal, 1).tolist() == [True, False, False, False, False]
    assert top_groups(signal, 2).tolist() == [True, False, True, False, False]
    assert top_groups(signal, 3).tolist() == [True, False, True, True, False]
    assert top_groups(signal, 0).tolist() == [False] * 5


# ---------------------------------------------------------------- hints


def test_hint_text_is_the_first_reference_lines_and_never_the_answer():
    p = TASKS.get("arithmetic_chain")(num_steps=3).problem(17, split="train", seed=0)
    assert len(p.steps) == 4 and p.steps[-1].startswith("A: ")
    assert max_hint_lines(p) == 3
    for k in range(1, 4):
        assert hint_text(p, k) == "".join(line + "\n" for line in p.steps[:k])
    assert hint_text(p, 1) == p.steps[0] + "\n"
    # Even a request for more lines than there are stops before the answer line.
    cur = _curriculum(_cfg(**{"hints.enabled": True}), [p])
    cur.hint_lines[p.uid] = 10
    text, lines = cur.hint(p)
    assert lines == 3 and text == f"{p.steps[0]}\n{p.steps[1]}\n{p.steps[2]}\n"
    assert "A:" not in text
    # init_steps: the first hint of a prompt.
    cur.hint_lines.clear()
    assert cur.hint(p) == (p.steps[0] + "\n", 1)
    # No reference solution: no hint.
    bare = Problem(prompt="Q: x\n", answer="1", steps=[], uid="bare", fields={})
    assert max_hint_lines(bare) == 0 and cur.hint(bare) is None


def test_record_hint_moves_one_line_towards_target_within_bounds():
    p = _problems(1)[0]  # 3 hintable lines
    cur = _curriculum(_cfg(**{"hints.enabled": True, "hints.target": 0.5}), [p])
    cases = [  # (lines used, pass rate) -> lines next time
        ((1, 0.0), 2),
        ((2, 0.25), 3),
        ((3, 0.0), 3),  # clipped at max_hint_lines
        ((3, 1.0), 2),
        ((2, 0.75), 1),
        ((1, 1.0), 1),  # clipped at 1
        ((2, 0.5), 2),  # at the target: unchanged
    ]
    for (lines, rate), expected in cases:
        cur.record_hint(p, lines, rate)
        assert cur.hint_lines[p.uid] == expected, (lines, rate)


# ---------------------------------------------------------------- replay buffer


def test_replay_buffer_evicts_oldest_and_keeps_newest_per_prompt():
    buf = ReplayBuffer(2)
    buf.add("a", [1, 2], [-0.5, -0.25], 1.0)
    buf.add("b", [3], [-1.0], 1.0)
    buf.add("a", [4, 5, 6], [-0.1, -0.2, -0.3], 0.5)  # re-added: newest, and now youngest
    assert len(buf) == 2
    assert buf.get("a") == dict(tokens=[4, 5, 6], logprobs=[-0.1, -0.2, -0.3], reward=0.5)
    buf.add("c", [7], [-2.0], 1.0)  # evicts b, the oldest
    assert buf.get("b") is None and len(buf) == 2
    assert buf.get("a")["tokens"] == [4, 5, 6] and buf.get("c")["tokens"] == [7]

    restored = ReplayBuffer.from_state_dict(json.loads(json.dumps(buf.state_dict())))
    assert restored.capacity == 2 and len(restored) == 2
    assert restored.get("a") == buf.get("a") and restored.get("c") == buf.get("c")
    # The eviction order survives too: a is older than c.
    restored.add("d", [8], [-0.5], 1.0)
    assert restored.get("a") is None and restored.get("c") is not None


@pytest.mark.parametrize("capacity", [0, -1])
def test_replay_buffer_capacity_below_one_is_an_error(capacity):
    with pytest.raises(ValueError, match="replay.capacity"):
        ReplayBuffer(capacity)


# ---------------------------------------------------------------- config checks

_DRIVE = {"drive.enabled": True, "drive.switch_step": 2, "drive.group_size": 8}


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({**_DRIVE, "drive.group_size": 6}, r"drive.group_size=6 .*divide"),
        ({**_DRIVE, "drive.group_size": 1}, r"drive.group_size=1 must be >= 2"),
        ({**_DRIVE, "drive.group_size": 2}, r"drive.group_size=2 .*shared-prompt group 4"),
        ({**_DRIVE, "drive.band_lo": 0.6, "drive.band_hi": 0.5}, r"band_lo <= band_hi"),
        ({**_DRIVE, "drive.band_hi": 1.5}, r"band_lo <= band_hi <= 1"),
        ({**_DRIVE, "drive.band_lo": -0.1}, r"0 <= band_lo"),
        ({**_DRIVE, "drive.switch_step": 0, "drive.switch_coverage": 0.0}, r"switch_step"),
        ({**_DRIVE, "drive.switch_step": 0, "drive.switch_coverage": 1.5}, r"switch_coverage"),
        (
            {"schedule.by": "steps", "schedule.levels": [{}, {}, {}], "schedule.boundaries": [2]},
            r"3 levels.*2 step boundaries",
        ),
        (
            {"schedule.by": "steps", "schedule.levels": [{}, {}], "schedule.boundaries": [2, 4]},
            r"boundaries",
        ),
        (
            {
                "schedule.by": "steps",
                "schedule.levels": [{}, {}, {}],
                "schedule.boundaries": [5, 2],
            },
            r"boundaries must rise",
        ),
        ({"schedule.by": "steps", "schedule.levels": []}, r"schedule.by='steps' needs levels"),
        ({"schedule.by": "epochs"}, r"schedule.by='epochs'"),
        (
            {"schedule.by": "pass_rate", "schedule.levels": [{}, {}], "schedule.window": 0},
            r"advance_at.*window",
        ),
        (
            {"schedule.by": "pass_rate", "schedule.levels": [{}, {}], "schedule.advance_at": 0.0},
            r"advance_at",
        ),
        (
            {
                **_DRIVE,
                "schedule.by": "steps",
                "schedule.levels": [{}, {}],
                "schedule.boundaries": [2],
            },
            r"drive and curriculum.schedule",
        ),
        ({"priority.enabled": True, "priority.oversample": 1}, r"priority.oversample=1"),
        ({"priority.enabled": True, "priority.by": "loss"}, r"priority.by='loss'"),
        ({"hints.enabled": True, "hints.placement": "suffix"}, r"hints.placement='suffix'"),
        ({"hints.enabled": True, "hints.target": 1.0}, r"curriculum.hints needs 0 < target"),
        ({"hints.enabled": True, "hints.init_steps": 0}, r"curriculum.hints.*init_steps"),
        ({"replay.enabled": True, "replay.weight": 0.0}, r"replay.weight=0.0"),
        ({"replay.enabled": True, "replay.weight": 1.5}, r"replay.weight=1.5"),
    ],
)
def test_bad_curriculum_settings_are_errors_naming_the_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        check_curriculum_config(_cfg(**overrides), rows=16, group_size=4, prompt_group=4)


def test_hints_and_replay_need_groups_of_two():
    for key in ("hints", "replay"):
        with pytest.raises(ValueError, match=f"curriculum.{key}.*group_size >= 2"):
            check_curriculum_config(
                _cfg(**{f"{key}.enabled": True}), rows=4, group_size=1, prompt_group=1
            )


def test_good_curriculum_settings_pass_the_check():
    check_curriculum_config(_cfg(), rows=16, group_size=4, prompt_group=4)
    check_curriculum_config(_cfg(**_DRIVE), rows=16, group_size=4, prompt_group=4)
    # Without shared prompts any divisor of the rows is a group.
    check_curriculum_config(
        _cfg(**{**_DRIVE, "drive.group_size": 2}), rows=16, group_size=4, prompt_group=1
    )


@pytest.mark.parametrize(
    "overrides",
    [_DRIVE, {"priority.enabled": True, "priority.by": "stats"}],
)
def test_drive_and_priority_by_stats_need_a_finite_pool(overrides):
    cfg = _cfg(**overrides)
    source = FakeSource(_problems(4), 8)
    source.pool = lambda: None
    with pytest.raises(ValueError, match="finite prompt pool"):
        Curriculum(
            cfg,
            task_cfg=common.rl_base(runlocal=True).task,
            source=source,
            prompts_per_step=4,
            group_size=4,
            prompt_group=4,
            seed=0,
            make_source=lambda *a: source,
        )


# ---------------------------------------------------------------- DRIVE


def _drive_fixture(**overrides):
    """Pool of 8 with hand-set stage-1 stats: pass rates and sample counts."""
    pool = _problems(8)
    u = [p.uid for p in pool]
    stats = _stats(
        {
            u[0]: (0, 8),  # 0.0: below band_lo
            u[1]: (2, 8),  # 0.25
            u[2]: (4, 8),  # 0.5 (band_hi inclusive)
            u[3]: (6, 8),  # 0.75: above band_hi
            u[4]: (8, 8),  # 1.0
            u[5]: (1, 8),  # 0.125
            # u[6] unseen
            u[7]: (2, 4),  # 0.5 but only 4 samples < min_samples
        }
    )
    cfg = _cfg(
        **{
            **_DRIVE,
            "drive.switch_step": 3,
            "drive.band_lo": 0.1,
            "drive.band_hi": 0.5,
            "drive.min_samples": 8,
            **overrides,
        }
    )
    return _curriculum(cfg, pool), u, stats


def test_drive_switches_at_switch_step_to_the_hard_band_hardest_first():
    cur, u, stats = _drive_fixture()
    assert cur.begin_step(0, stats) is cur.uniform and cur.hard_set == []
    assert cur.begin_step(2, stats).name == "uniform"
    stage = cur.begin_step(3, stats)
    assert stage is cur.hard
    assert (stage.name, stage.prompts, stage.group) == ("drive_hard", 2, 8)  # 16 rows either way
    assert stage.prompts * stage.group == cur.uniform.prompts * cur.uniform.group
    assert cur.hard_set == [u[5], u[1], u[2]]  # 0.125, 0.25, 0.5
    # Once switched it stays switched (and keeps the set it chose).
    stats.update([u[0]], np.full((1, 8), 0.3), step=3)
    assert cur.begin_step(4, stats) is cur.hard and cur.hard_set == [u[5], u[1], u[2]]


def test_drive_hard_set_size_keeps_the_hardest():
    cur, u, stats = _drive_fixture(**{"drive.hard_set_size": 2})
    cur.begin_step(3, stats)
    assert cur.hard_set == [u[5], u[1]]
    kept = [stats.pass_rate(x) for x in cur.hard_set]
    dropped = [stats.pass_rate(u[2])]
    assert max(kept) <= min(dropped)


def test_drive_switches_by_coverage():
    pool = _problems(8)
    u = [p.uid for p in pool]
    cfg = _cfg(**{**_DRIVE, "drive.switch_step": 0, "drive.switch_coverage": 0.75})
    cfg.drive.min_samples = 4
    cur = _curriculum(cfg, pool)
    stats = _stats({u[i]: (1, 4) for i in range(5)})  # 5/8 seen
    assert cur.begin_step(100, stats) is cur.uniform  # no switch_step: only coverage counts
    stats.update([u[5]], np.array([[0.0, 0.0, 1.0, 0.0]]), step=1)  # 6/8 = 0.75
    assert cur.begin_step(101, stats) is cur.hard
    # Every seen prompt is at 0.25, inside [0, 0.5]; equal rates keep uid order.
    assert cur.hard_set == sorted(u[:6])


def test_drive_stage_two_draws_hard_prompts_deterministically():
    cur, u, stats = _drive_fixture()
    cur.begin_step(3, stats)
    first = [p.uid for p in cur.next_problems(3, 1, stats)]
    assert len(first) == 16 // 8
    assert set(first) <= {u[5], u[1], u[2]}
    assert [p.uid for p in cur.next_problems(3, 1, stats)] == first
    # Another curriculum in the same state draws the same prompts (a resumed run).
    other, _, _ = _drive_fixture()
    other.begin_step(3, stats)
    assert [p.uid for p in other.next_problems(3, 1, stats)] == first
    # Over many steps every hard prompt is drawn and nothing else is.
    drawn = {p.uid for s in range(3, 40) for p in cur.next_problems(s, 1, stats)}
    assert drawn == {u[5], u[1], u[2]}


def test_drive_retention_drops_a_prompt_that_passed_above_retain_max_pass():
    cur, u, stats = _drive_fixture(**{"drive.retain_max_pass": 0.5})
    cur.begin_step(3, stats)
    correct = np.array(  # [P=2, G=8]
        [
            [1, 1, 1, 1, 1, 0, NAN, NAN],  # u5: 5/6 > 0.5 -> leaves
            [1, 1, 1, 1, 0, 0, 0, 0],  # u1: exactly 0.5 -> stays
        ]
    )
    cur.end_step([u[5], u[1]], correct, accuracy=0.6)
    assert cur.hard_set == [u[1], u[2]]
    # The set never empties: the last prompts stay even when solved.
    cur.end_step([u[1], u[2]], np.ones((2, 8)), accuracy=1.0)
    assert cur.hard_set == [u[1], u[2]]


def test_drive_retention_is_off_at_retain_max_pass_one():
    cur, u, stats = _drive_fixture()
    cur.begin_step(3, stats)
    cur.end_step([u[5], u[1]], np.ones((2, 8)), accuracy=1.0)
    assert cur.hard_set == [u[5], u[1], u[2]]


# ---------------------------------------------------------------- priority


def test_priority_by_stats_keeps_the_most_signal_unseen_at_unseen_score():
    pool = _problems(8)
    u = [p.uid for p in pool]
    cfg = _cfg(
        **{
            "priority.enabled": True,
            "priority.by": "stats",
            "priority.oversample": 2,
            "priority.unseen_score": 0.3,
        }
    )
    cur = _curriculum(cfg, pool, prompts=4)
    stats = _stats(
        {
            u[0]: (2, 4),  # 0.5 -> 0.25
            u[1]: (0, 4),  # 0
            u[2]: (4, 4),  # 0
            u[3]: (1, 4),  # 0.25 -> 0.1875
            # u[4] unseen -> 0.3
            u[5]: (1, 8),  # 0.125 -> 0.109375
            u[6]: (3, 4),  # 0.75 -> 0.1875, ties u[3], which comes first
            # u[7] unseen -> 0.3
        }
    )
    kept = cur.next_problems(0, 1, stats)
    assert [p.uid for p in kept] == [u[0], u[3], u[4], u[7]]
    # With unseen prompts scored 0 they lose to every in-between prompt.
    cfg0 = copy.deepcopy(cfg)
    cfg0.priority.unseen_score = 0.0
    cur0 = _curriculum(cfg0, pool, prompts=4)
    assert [p.uid for p in cur0.next_problems(0, 1, stats)] == [u[0], u[3], u[5], u[6]]


# ---------------------------------------------------------------- schedules


def test_schedule_by_steps_follows_the_boundaries():
    made = []
    levels = [{"num_steps": 2}, {"num_steps": 3}, {"num_steps": 4}]
    cfg = _cfg(**{"schedule.by": "steps", "schedule.levels": levels, "schedule.boundaries": [2, 5]})
    cur = _curriculum(cfg, made=made)
    # Each level's task kwargs merge over task.kwargs (num_steps=3, max_operand=9).
    assert made == [
        {"num_steps": 2, "max_operand": 9},
        {"num_steps": 3, "max_operand": 9},
        {"num_steps": 4, "max_operand": 9},
    ]
    expected = {0: 0, 1: 0, 2: 1, 3: 1, 4: 1, 5: 2, 6: 2, 1000: 2}
    for step, level in expected.items():
        cur.begin_step(step, PromptStats())
        assert cur.level == level, step
        # Prompts come from that level's source.
        before = [s.position for s in cur.sources]
        cur.next_problems(step, 1, PromptStats())
        moved = [a != b for a, b in zip(before, (s.position for s in cur.sources))]
        assert moved == [i == level for i in range(3)], step


def test_schedule_by_pass_rate_advances_after_a_full_window():
    cfg = _cfg(
        **{
            "schedule.by": "pass_rate",
            "schedule.levels": [{}, {}, {}],
            "schedule.window": 2,
            "schedule.advance_at": 0.5,
        }
    )
    cur = _curriculum(cfg)
    dummy = np.zeros((4, 4))
    uids = [p.uid for p in _problems(4)]
    trace = []
    for acc in [0.9, 0.3, 0.8, 0.9, 0.2, 0.7, 0.6, 1.0, 1.0, 1.0]:
        cur.end_step(uids, dummy, accuracy=acc)
        trace.append(cur.level)
    # 0.9 alone: window not full. [0.9, 0.3] = 0.6 ≥ 0.5 → 1 (window cleared).
    # 0.8 alone: not full; [0.8, 0.9] → 2, the last level: never further.
    assert trace == [0, 1, 1, 2, 2, 2, 2, 2, 2, 2]


def test_schedule_by_pass_rate_needs_the_mean_not_one_good_step():
    cfg = _cfg(
        **{
            "schedule.by": "pass_rate",
            "schedule.levels": [{}, {}],
            "schedule.window": 3,
            "schedule.advance_at": 0.5,
        }
    )
    cur = _curriculum(cfg)
    uids = [p.uid for p in _problems(4)]
    trace = []
    for acc in [1.0, 0.0, 0.0, 0.9, 0.7]:  # means of full windows: 1/3, 0.3, 0.533
        cur.end_step(uids, np.zeros((4, 4)), accuracy=acc)
        trace.append(cur.level)
    assert trace == [0, 0, 0, 0, 1]


# ---------------------------------------------------------------- checkpoint state


def test_state_dict_round_trips_through_json_with_drive_hints_and_replay():
    overrides = {
        "drive.retain_max_pass": 0.5,
        "hints.enabled": True,
        "replay.enabled": True,
        "replay.capacity": 3,
    }
    cur, u, stats = _drive_fixture(**overrides)
    cur.begin_step(3, stats)
    cur.end_step([u[5], u[1]], np.array([[1.0] * 8, [0.0] * 8]), accuracy=0.5)
    cur.hint_lines = {u[0]: 2, u[3]: 3}
    for i in range(4):  # u0 evicted
        cur.replay.add(u[i], [i, i + 1], [-0.5, -0.25], 1.0)
    state = json.loads(json.dumps(cur.state_dict()))

    fresh, _, _ = _drive_fixture(**overrides)
    fresh.load_state_dict(state)
    assert fresh.stage is fresh.hard
    assert fresh.hard_set == [u[1], u[2]]
    assert fresh.hint_lines == {u[0]: 2, u[3]: 3}
    assert len(fresh.replay) == 3 and fresh.replay.get(u[0]) is None
    for i in (1, 2, 3):
        assert fresh.replay.get(u[i]) == dict(tokens=[i, i + 1], logprobs=[-0.5, -0.25], reward=1.0)
    assert fresh.state_dict() == cur.state_dict()
    # The draws continue as in the original.
    assert [p.uid for p in fresh.next_problems(9, 2, stats)] == [
        p.uid for p in cur.next_problems(9, 2, stats)
    ]


def test_state_dict_round_trips_the_schedule_level_window_and_sources():
    cfg = _cfg(
        **{
            "schedule.by": "pass_rate",
            "schedule.levels": [{}, {}, {}],
            "schedule.window": 3,
            "schedule.advance_at": 0.5,
        }
    )
    cur = _curriculum(cfg)
    uids = [p.uid for p in _problems(4)]
    for acc in [1.0, 1.0, 1.0, 0.25]:  # level 1, one accuracy in the window
        cur.end_step(uids, np.zeros((4, 4)), accuracy=acc)
    cur.next_problems(0, 1, PromptStats())
    cur.next_problems(1, 1, PromptStats())
    state = json.loads(json.dumps(cur.state_dict()))
    fresh = _curriculum(cfg)
    fresh.load_state_dict(state)
    assert fresh.level == 1
    assert [s.position for s in fresh.sources] == [0, 8, 0]
    assert fresh.state_dict() == cur.state_dict()
    # The restored window: two more steps at 0.875 make [0.25, 0.875, 0.875] ≥ 0.5.
    fresh.end_step(uids, np.zeros((4, 4)), accuracy=0.875)
    assert fresh.level == 1
    fresh.end_step(uids, np.zeros((4, 4)), accuracy=0.875)
    assert fresh.level == 2


# ---------------------------------------------------------------- trainer


def test_trainer_prefix_hint_longer_than_the_budget_is_shortened(guided_trainer):
    trainer = guided_trainer
    batch, problems, _ = trainer.collect()
    width = 8  # a completion budget that holds one reference line ("7+5=12\n") but not two
    arrays = {k: np.array(v) for k, v in batch.items()}
    for key in ("tokens", "rollout_logprobs", "mask"):
        arrays[key] = arrays[key][:, :width]
    arrays["lengths"] = np.minimum(arrays["lengths"], width)
    for p in problems:
        trainer.curriculum.hint_lines[p.uid] = 3
    stats = trainer._hint_groups(problems, arrays, np.ones(len(problems), bool), 1)
    assert stats["hint_groups"] == 2.0 and stats["hint_lines"] == 1.0
    g = trainer.group_size
    for i in range(2):
        ids = trainer.tokenizer.encode(problems[i].steps[0] + "\n")
        assert len(ids) < width
        for r in range(i * g, (i + 1) * g):
            assert arrays["tokens"][r, : len(ids)].tolist() == ids
            assert arrays["lengths"][r] <= width


def test_trainer_context_hints_train_the_completion_for_the_unhinted_prompt(tmp_path):
    from rewardjax.training.curriculum import hint_text
    from rewardjax.training.rollout import encode_prompts

    c = _trainer_config(
        **{
            "curriculum.hints.enabled": True,
            "curriculum.hints.placement": "context",
            "curriculum.hints.max_groups": 2,
        }
    )
    trainer = rl.RLTrainer(c, str(tmp_path))
    calls = []
    sample = trainer._sample

    def spy(prompts, rng, **kw):
        out = sample(prompts, rng, **kw)
        calls.append((np.asarray(prompts[0]), np.asarray(prompts[1]), out))
        return out

    trainer._sample = spy
    batch, problems, metrics = trainer.collect()
    assert metrics["curriculum/hint_groups"] == 2.0 and len(calls) == 2
    g = trainer.group_size
    # The second sampler call saw the prompts with the hint written in.
    tokens, mask, out = calls[1]
    for j in range(2):
        seen = trainer.tokenizer.decode(tokens[j][mask[j] > 0].tolist())
        hint = hint_text(problems[j], 1).strip()
        assert seen == problems[j].prompt + f"Hint: {hint}\n"
    # The batch trains those completions for the prompt without the hint ...
    unhinted, _ = encode_prompts(trainer.tokenizer, problems)
    width = batch["prompt_tokens"].shape[1]
    np.testing.assert_array_equal(batch["prompt_tokens"][::g], unhinted[:, -width:])
    # ... and takes the ratio against the hinted sampler's log-probs.
    np.testing.assert_array_equal(batch["tokens"][: 2 * g], np.asarray(out.tokens)[: 2 * g])
    np.testing.assert_array_equal(
        batch["rollout_logprobs"][: 2 * g], np.asarray(out.logprobs)[: 2 * g]
    )
    device, _ = trainer.prepare(batch)
    old = np.asarray(device["old_logprobs"])
    np.testing.assert_array_equal(old[: 2 * g], batch["rollout_logprobs"][: 2 * g])
    keys = ("prompt_tokens", "prompt_mask", "tokens", "mask")
    unhinted_lp, _ = trainer._chunked(
        trainer._logprob_fn, trainer.state.params["policy"], batch, keys
    )
    on = batch["mask"][: 2 * g] > 0
    gap = np.abs(np.asarray(unhinted_lp)[: 2 * g] - old[: 2 * g])[on]
    assert gap.max() > 1e-3  # the two contexts give different log-probs


def test_trainer_counts_failed_groups_without_a_reference_to_hint(guided_trainer):
    import dataclasses

    trainer = guided_trainer
    batch, problems, _ = trainer.collect()
    arrays = {k: np.array(v) for k, v in batch.items()}
    before = arrays["tokens"].copy()
    bare = [dataclasses.replace(p, steps=[]) for p in problems]  # e.g. a prompt file's rows
    stats = trainer._hint_groups(bare, arrays, np.array([True, True, False, True]), 1)
    assert stats["hint_groups"] == 0.0 and stats["hint_unavailable_groups"] == 3.0
    np.testing.assert_array_equal(arrays["tokens"], before)  # nothing was resampled


def _trainer_config(**overrides) -> ml_collections.ConfigDict:
    c = grpo_arithmetic.get_config("runlocal=True")  # P = 4, G = 4, 32 new tokens
    c.export_hf = False
    c.eval.every = 0
    c.checkpoint.async_save = False
    c.task.pool_size = 6
    c.steps = 1
    for key, value in overrides.items():
        node = c
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    c.lock()
    return c


@pytest.fixture(scope="module")
def guided_trainer(tmp_path_factory):
    """Hints (prefix, 2 groups at most) and replay (weight 0.5), random-init policy."""
    c = _trainer_config(
        **{
            "curriculum.hints.enabled": True,
            "curriculum.hints.placement": "prefix",
            "curriculum.hints.max_groups": 2,
            "curriculum.replay.enabled": True,
            "curriculum.replay.weight": 0.5,
        }
    )
    return rl.RLTrainer(c, str(tmp_path_factory.mktemp("guided")))


def test_trainer_hints_prefix_the_failed_groups(guided_trainer, monkeypatch):
    trainer = guided_trainer
    g, width = trainer.group_size, trainer.config.rollout.max_new_tokens
    lines_before = dict(trainer.curriculum.hint_lines)
    seeds = []

    class Recorder:  # the reward seeds (`step`) of the main and the hinted rows
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, *args, **kwargs):
            seeds.append(kwargs["step"])
            return self.inner(*args, **kwargs)

    monkeypatch.setattr(trainer, "rewards", Recorder(trainer.rewards))
    batch, problems, metrics = trainer.collect()
    # Main rows seed step·R + r (r counts rounds from 1); the hinted rows of that
    # round the same number in another namespace, never a main seed.
    rounds = trainer.config.curation.max_rounds
    assert seeds == [trainer.step * rounds + 1, rl.HINT_SEED_OFFSET + trainer.step * rounds + 1]
    # The random policy fails every group; two (max_groups) are hinted.
    assert metrics["curriculum/fail_groups"] == 4.0
    assert metrics["curriculum/hint_groups"] == 2.0
    assert batch["tokens"].shape == (16, width)
    assert batch["behaviour"].tolist() == [True] * 8 + [False] * 8
    assert np.all(batch["lengths"] <= width)
    assert np.all(batch["mask"].sum(axis=1) <= width)
    for i in range(2):
        p = problems[i]
        lines = lines_before.get(p.uid, 1)  # init_steps = 1
        hint = "".join(s + "\n" for s in p.steps[:lines])
        ids = trainer.tokenizer.encode(hint)
        h = len(ids)
        for r in range(i * g, (i + 1) * g):
            assert batch["tokens"][r, :h].tolist() == ids
            assert np.all(batch["mask"][r, :h] == 1)
            assert np.all(batch["rollout_logprobs"][r, :h] == 0.0)
            # The sampled continuation has its own (negative) log-probs.
            n = int(batch["lengths"][r])
            assert np.all(batch["rollout_logprobs"][r, h:n] < 0.0)
            assert np.all(batch["mask"][r, n:] == 0)
        # A failed hinted group asks for one line more next time (target 0.5).
        assert trainer.curriculum.hint_lines[p.uid] == min(lines + 1, 3)
    # The unhinted groups are the policy's own samples: no forced tokens.
    assert np.all(batch["rollout_logprobs"][8:][batch["mask"][8:] > 0] < 0.0)

    device, prep_metrics = trainer.prepare(batch)
    old = np.asarray(device["old_logprobs"])
    np.testing.assert_array_equal(old[:8], batch["rollout_logprobs"][:8])
    # The other rows keep the recomputed log-probs: close to the sampler's, not copied.
    on = batch["mask"][8:] > 0
    np.testing.assert_allclose(old[8:][on], batch["rollout_logprobs"][8:][on], atol=1e-3)
    assert float(prep_metrics["curriculum/behaviour_rows"]) == 8


def test_trainer_replay_fills_the_last_row_of_a_failed_group(guided_trainer, monkeypatch):
    trainer = guided_trainer
    monkeypatch.setattr(trainer.curriculum, "hint", lambda problem: None)  # replay alone
    g = trainer.group_size
    stored = {}
    for p in trainer.source.pool():
        text = "".join(s + "\n" for s in p.steps)
        tokens = trainer.tokenizer.encode(text)
        logprobs = [-0.25] * len(tokens)
        stored[p.uid] = (tokens, logprobs)
        trainer.curriculum.replay.add(p.uid, tokens, logprobs, 1.0)
    batch, problems, metrics = trainer.collect()
    assert metrics["curriculum/replay_rows"] == 4.0
    last = np.arange(g - 1, 16, g)
    assert batch["behaviour"].tolist() == [r in last for r in range(16)]
    for i, p in enumerate(problems):
        r = i * g + g - 1
        tokens, logprobs = stored[p.uid]
        n = len(tokens)
        assert int(batch["lengths"][r]) == n
        assert batch["tokens"][r, :n].tolist() == tokens
        assert np.all(batch["tokens"][r, n:] == trainer.tokenizer.pad_id)
        assert batch["mask"][r].tolist() == [1] * n + [0] * (batch["mask"].shape[1] - n)
        np.testing.assert_array_equal(batch["rollout_logprobs"][r, :n], logprobs)
        assert batch["rewards"][r] == 1.0 and batch["correct"][r] == 1.0
        assert batch["advantage_weight"][r] == 0.5
        # The other rows are the policy's failures.
        assert np.all(batch["rewards"][i * g : r] == 0.0)
    # The curriculum's statistics read the policy's own outcomes, not the replayed rows.
    assert metrics["rollout/policy_accuracy"] == 0.0 and batch["correct"].mean() == 0.25

    weighted, _ = trainer.prepare(batch)
    unweighted, _ = trainer.prepare({**batch, "advantage_weight": np.ones(16, np.float32)})
    a_w = np.asarray(weighted["advantages"])[:, 0]
    a_1 = np.asarray(unweighted["advantages"])[:, 0]
    # Rewards [0, 0, 0, 1]: mean 1/4, sample std 1/2 → (1 − 1/4)/(1/2) = 1.5, others −0.5.
    np.testing.assert_allclose(a_1.reshape(4, g), [[-0.5, -0.5, -0.5, 1.5]] * 4, atol=1e-4)
    np.testing.assert_allclose(a_w.reshape(4, g), [[-0.5, -0.5, -0.5, 0.75]] * 4, atol=1e-4)
    old = np.asarray(weighted["old_logprobs"])
    np.testing.assert_array_equal(old[last], batch["rollout_logprobs"][last])


@pytest.fixture(scope="module")
def drive_run(tmp_path_factory):
    """Hints + replay + DRIVE (switch at step 1, G₂ = 2·G₁), checkpointed every step, 2 steps."""
    workdir = str(tmp_path_factory.mktemp("drive"))
    c = _trainer_config(
        **{
            "steps": 2,
            "checkpoint.every": 1,
            "curriculum.hints.enabled": True,
            "curriculum.replay.enabled": True,
            "curriculum.replay.capacity": 4,
            "curriculum.drive.enabled": True,
            "curriculum.drive.switch_step": 1,
            "curriculum.drive.group_size": 8,
            "curriculum.drive.min_samples": 4,
        }
    )
    trainer = rl.RLTrainer(c, workdir)
    seen_uniform = set()
    original_update = trainer.prompt_stats.update

    def update(uids, correct, *, step):
        if step == 0:
            seen_uniform.update(uids)
        return original_update(uids, correct, step=step)

    trainer.prompt_stats.update = update
    # A stored rollout the random policy would never produce (it stays: capacity 4).
    pool = trainer.source.pool()
    trainer.curriculum.replay.add(pool[0].uid, [5, 6, 7], [-1.0, -2.0, -3.0], 1.0)
    trainer.run()
    state = json.loads(json.dumps(trainer.curriculum.state_dict()))
    return c, workdir, trainer, state, seen_uniform


def test_trainer_drive_switches_to_the_hard_set_with_the_large_group(drive_run):
    c, _, trainer, state, seen_uniform = drive_run
    assert state["stage"] == "drive_hard"
    # Stage 1 (step 0) saw 4 of the 6 pool prompts, 4 samples each, none solved:
    # those 4 are the hard set (pass rate 0 in [0, 0.5]); the 2 unseen are not.
    assert len(seen_uniform) == 4
    assert set(state["hard_set"]) == seen_uniform
    assert trainer.group_size == 8 and trainer.stage.prompts == 2
    batch, problems, metrics = trainer.collect()
    assert metrics["curriculum/drive_stage"] == 1.0
    assert batch["tokens"].shape[0] == 16 == c.rollout.prompts_per_step * c.rollout.group_size
    assert len(problems) == 2
    assert {p.uid for p in problems} <= set(trainer.curriculum.hard_set) <= seen_uniform
    # The 8 rows of a group share one prompt.
    rows = batch["prompt_tokens"].reshape(2, 8, -1)
    assert np.all(rows == rows[:, :1])


def test_trainer_resume_restores_the_curriculum_exactly(drive_run):
    c, workdir, _, state, _ = drive_run
    assert state["hint_lines"], "no hint was given: the test would compare empty state"
    assert state["replay"]["items"], "the replay buffer is empty"
    resumed = rl.RLTrainer(c, workdir)
    assert resumed.step == 2
    assert resumed.curriculum.stage is resumed.curriculum.hard
    assert resumed.group_size == 8 and resumed.rewards.group_size == 8
    assert resumed.curriculum.hard_set == state["hard_set"]
    assert resumed.curriculum.hint_lines == state["hint_lines"]
    pool = resumed.source.pool()
    assert resumed.curriculum.replay.get(pool[0].uid) == dict(
        tokens=[5, 6, 7], logprobs=[-1.0, -2.0, -3.0], reward=1.0
    )
    assert json.loads(json.dumps(resumed.curriculum.state_dict())) == state
