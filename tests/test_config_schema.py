"""Every shipped config holds only keys its trainer's base config defines (no dead keys).

A key the trainer never reads would be silently ignored: the base configs of
configs/common.py are the schema each trainer reads (its unknown-key checks
cover the free-form blocks: reward sources, shaping steps, loss kwargs).
"""

import glob
import importlib
import os

import pytest

from configs import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Blocks whose keys are the user's (checked against registries when a trainer starts).
FREE_FORM = ("kwargs", "overrides", "sources", "shaping", "reader_fields", "test_reader_fields")
NEEDS = {
    "grpo_arithmetic_orm": "orm_paths=/unused",
    "repro_overoptimization": "orm_small_path=/unused",
}
NOT_TRAINERS = {"label_arithmetic", "quickstart"}  # the labelling CLI; two nested trainers


def _paths(d, prefix=""):
    out = set()
    for k, v in d.items():
        p = f"{prefix}.{k}" if prefix else k
        out.add(p)
        if isinstance(v, dict) and k not in FREE_FORM:
            out |= _paths(v, p)
    return out


def _base(c):
    if c["trainer"] == "rl":
        return common.rl_base().to_dict()
    kind = c["objective"]["kind"]
    return (common.sft_base() if kind == "sft" else common.offline_base(kind)).to_dict()


NAMES = sorted(
    os.path.basename(f)[:-3]
    for f in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if os.path.basename(f)[:-3] not in ("__init__", "common")
)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_config_keys_are_in_its_trainers_schema(name):
    module = importlib.import_module(f"configs.{name}")
    arg = ",".join(["runlocal=True", *([NEEDS[name]] if name in NEEDS else [])])
    c = module.get_config(arg).to_dict()
    if name in NOT_TRAINERS:
        assert c.get("trainer") in (None, "quickstart")
        if c.get("trainer") == "quickstart":
            assert _paths(c["sft"]) <= _paths(_base(c["sft"]))
            assert _paths(c["rl"]) <= _paths(_base(c["rl"]))
        return
    extra = sorted(_paths(c) - _paths(_base(c)))
    assert not extra, f"configs/{name}.py sets keys its trainer never reads: {extra}"
