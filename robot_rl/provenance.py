"""Provenance: what produced a number (DESIGN §8).

Every run directory and every benchmark records the git commit, the package versions and the
machine (cores, CPU model, GPU), so any number in ``docs/`` can be traced to the run that made it.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

#: Distributions whose versions matter for the numbers we publish.
PACKAGES = ("robot_rl", "torch", "numpy", "pybullet", "pin", "zarr", "gymnasium", "safetensors",
            "pydantic", "ros-rclpy", "stable-baselines3")


def git_commit(repo: Path = REPO) -> str | None:
    """``HEAD``'s hash, suffixed ``-dirty`` when tracked files differ; None outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (missing ones are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory, GPU (if torch is importable and sees one), OS, Python."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    if "torch" in sys.modules or _importable("torch"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def _importable(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(name) is not None


def provenance() -> dict[str, Any]:
    """Everything above in one JSON-able dict."""
    return {"git_commit": git_commit(), "packages": package_versions(), "machine": machine()}
