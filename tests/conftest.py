"""Fixtures shared by every test folder."""
import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bench_learning():
    """``bench/learning.py`` as a module (its arms, ``run_ours``, ...); bench/ is no package."""
    spec = importlib.util.spec_from_file_location(
        "bench_learning", Path(__file__).resolve().parents[1] / "bench" / "learning.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
