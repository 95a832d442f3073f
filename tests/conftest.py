"""Fixtures shared by every test folder."""
import importlib.util
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str):
    """``bench/<name>.py`` as a module (bench/ is no package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def bench_learning():
    """``bench/learning.py`` as a module (its arms, ``run_ours``, ...)."""
    return load_bench("learning")


@pytest.fixture(scope="session")
def bench_demos_graph():
    """``bench/demos_graph.py`` as a module (its summary and plot)."""
    return load_bench("demos_graph")
