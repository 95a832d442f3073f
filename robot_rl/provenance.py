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
    """Cores, CPU model, memory, GPU (:func:`gpu_name`), OS, Python."""
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
    info["gpu"] = gpu_name()
    return info


def gpu_name() -> str | None:
    """The first CUDA GPU's name, or None. Through torch only if this process already imported
    it (importing torch costs seconds: the runner and the CLI do not pay that for a record);
    otherwise from the NVIDIA driver's /proc entries."""
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        try:
            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        except Exception:  # noqa: BLE001 - a broken CUDA set-up is "no GPU" for a record
            return None
    try:
        for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def provenance() -> dict[str, Any]:
    """Everything above in one JSON-able dict."""
    return {"git_commit": git_commit(), "packages": package_versions(), "machine": machine()}
