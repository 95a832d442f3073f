"""Provenance recorded beside every run and benchmark."""
import json

import pytest

from robot_rl.provenance import git_commit, machine, package_versions, provenance

pytestmark = pytest.mark.unit


def test_provenance_is_json_and_names_the_machine(tmp_path):
    p = provenance()
    json.dumps(p)
    assert p["machine"]["cores"] >= 1 and p["machine"]["cpu"]
    assert "numpy" in p["packages"] and "robot_rl" in p["packages"]
    assert "not-a-package-xyz" not in package_versions(("not-a-package-xyz",))
    assert git_commit(tmp_path) is None  # not a checkout
    assert "python" in machine()


def test_provenance_does_not_import_torch():
    """The record costs no torch import (seconds) in processes that do not use torch."""
    import subprocess
    import sys

    code = ("import sys; from robot_rl.provenance import provenance; p = provenance(); "
            "assert 'gpu' in p['machine']; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out
