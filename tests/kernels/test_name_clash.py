"""The repository's `kernels/` directory must not shadow Hugging Face's `kernels` package.

`python -m ...` from the repository root puts the root on sys.path, where
`kernels/` (installed as `rewardjax.kernels`) would otherwise be found first
by `import kernels`, which transformers does.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROGRAM = """
import sys
import kernels
import rewardjax.kernels as ours
assert kernels is not ours, "top-level kernels is this repository's directory"
assert hasattr(kernels, "get_kernel"), kernels.__file__
assert sys.modules["kernels"] is kernels
assert hasattr(ours, "fused_policy_loss")
from transformers import Qwen2Config, Qwen2ForCausalLM
print(type(Qwen2ForCausalLM(Qwen2Config(vocab_size=8, hidden_size=8, intermediate_size=8,
      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))).__name__)
"""


def test_import_kernels_from_the_repository_root_gives_the_hugging_face_package():
    # `python -c` puts the working directory first on sys.path, as `python -m` does.
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("Qwen2ForCausalLM")
