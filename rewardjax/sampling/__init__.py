"""KV-cache sampler: jit prefill + `lax.while_loop` decode; returns tokens and log-probs."""

from rewardjax.sampling.sampler import (
    DEFAULT_BUCKETS,
    SamplingParams,
    bucket,
    generate,
    pad_prompts,
)

__all__ = ["DEFAULT_BUCKETS", "SamplingParams", "bucket", "generate", "pad_prompts"]
