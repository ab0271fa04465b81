"""vertjax: T5X-style JAX/Flax recipes for trustworthy vertical-domain language models."""

import pathlib

import setuptools

_HERE = pathlib.Path(__file__).parent


def _requirements(name: str) -> list[str]:
    lines = (_HERE / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-r"))]


setuptools.setup(
    name="vertjax",
    version="0.1.0",
    description="T5X-style JAX/Flax recipes for vertical-domain language models.",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["vertjax", "vertjax.*"]),
    package_data={"vertjax": ["gin_configs/**/*.gin", "resources/**/*"]},
    include_package_data=True,
    install_requires=_requirements("requirements.txt"),
    extras_require={"test": _requirements("requirements-test.txt")},
    entry_points={"console_scripts": ["vertjax=vertjax.cli:main"]},
)
