"""rewardjax: post-training language models with RL and reward models, in JAX."""

__version__ = "0.1.0"
