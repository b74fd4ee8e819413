"""Pallas kernels, each beside its pure-jnp reference; installed as `rewardjax.kernels`."""
