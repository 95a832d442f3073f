"""Checkpoints and the exported policy: safetensors + JSON, written atomically, never pickled.

A checkpoint is two files::

    ckpt_000020000.safetensors   every tensor: learner.* (weights, targets, normaliser, Adam
                                 moments and steps, torch generator states), sampler.* (pool rows,
                                 priorities), extra.* (the caller's tensors); its safetensors
                                 metadata holds the JSON below as well, so the file alone suffices
    ckpt_000020000.json          sidecar: format, architecture, counters, optimiser settings,
                                 sampler meta (numpy RNG state, sample count), the caller's extra
                                 state (trainer counters, noise RNG), sha256 of the .safetensors

Both are written as temp file + fsync + ``os.replace``, the tensors first and the sidecar last,
so a crash leaves the previous checkpoint or the new one, never a torn file; :func:`load_checkpoint`
checks the sidecar's sha256 against the tensor file. Loading into a learner of another
architecture raises :class:`CheckpointMismatchError` naming each field that differs.

The policy alone (:func:`export_policy`) is a small safetensors blob -- actor weights, action
bounds and the observation normaliser, with ``format``, ``architecture``, ``config_hash`` and
``version`` in its metadata: the ``PolicyWeights.weights`` payload. :func:`load_policy` rebuilds
the actor from it (no pickle, no ``torch.load``).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from robot_rl.agents.config import config_hash
from robot_rl.agents.networks import Actor, GaussianActor, RunningNormalizer

CHECKPOINT_FORMAT = "robot_rl.agents.checkpoint/1"
POLICY_FORMAT = "robot_rl.policy/1"
_META_KEY = "robot_rl_checkpoint"


class CheckpointMismatchError(ValueError):
    """A checkpoint written for another architecture (or format)."""


def write_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """``path`` gets ``data`` whole or keeps its old content: temp file, fsync, rename, dir fsync."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


#: Architecture keys of the observation spec (:func:`robot_rl.agents.base.observation_architecture`):
#: compared only when both sides have them -- checkpoints written before they were recorded, and
#: learners built without a spec (a checkpoint's own evaluation), cannot say.
OBSERVATION_KEYS = ("observation", "observation_hash")


def architecture_difference(saved: dict[str, Any], mine: dict[str, Any], *,
                            saved_spec: dict[str, Any] | None = None,
                            my_spec: Any = None) -> list[str]:
    """Lines ``field: checkpoint has X, this learner has Y`` for every differing field.

    The observation spec is compared when both architectures record it; with both full specs
    (``saved_spec``: the checkpoint's ``observation_spec`` meta, ``my_spec``: the learner's
    :class:`~robot_rl.specs.ObservationSpec`) the line names the differing field.
    """
    out = []
    for k in sorted(set(saved) | set(mine)):
        if k in OBSERVATION_KEYS and (k not in saved or k not in mine):
            continue
        if saved.get(k) != mine.get(k):
            if k == "observation_hash" and saved_spec is not None and my_spec is not None:
                from robot_rl.specs import ObservationSpec

                try:
                    why = ObservationSpec.from_dict(saved_spec).difference(
                        my_spec, mine="the checkpoint", theirs="this learner")
                except ValueError as e:
                    why = f"the checkpoint's observation spec is unreadable ({e})"
                out.append(f"{k}: checkpoint has {saved.get(k)!r}, this learner has "
                           f"{mine.get(k)!r}: {why}")
                continue
            out.append(f"{k}: checkpoint has {saved.get(k)!r}, this learner has {mine.get(k)!r}")
    return out


def save_checkpoint(path: str | Path, learner: Any, *, sampler: Any = None,
                    extra: dict[str, Any] | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None,
                    fsync: bool = True) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json`` sidecar atomically; return ``path``."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path: expected a .safetensors file name, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"learner.{k}": v for k, v in learner.state_tensors().items()}
    sampler_meta = None
    if sampler is not None:
        arrays, sampler_meta = sampler.state_dict()
        for k, v in arrays.items():
            tensors[f"sampler.{k}"] = torch.from_numpy(np.ascontiguousarray(v))
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra.{k}"] = v.detach().cpu().contiguous()
    meta = {
        "format": CHECKPOINT_FORMAT,
        "architecture": learner.architecture(),
        "observation_spec": (None if getattr(learner, "observation", None) is None
                             else learner.observation.to_dict()),
        "learner": learner.state_meta(),
        "sampler": sampler_meta,
        "extra": extra or {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch": torch.__version__,
    }
    meta_json = json.dumps(meta, sort_keys=True)
    blob = st_save(tensors, metadata={_META_KEY: meta_json})
    write_atomic(path, blob, fsync=fsync)
    side = dict(meta)
    side["sha256"] = hashlib.sha256(blob).hexdigest()
    side["tensors"] = {k: [str(v.dtype).replace("torch.", ""), list(v.shape)]
                       for k, v in sorted(tensors.items())}
    write_atomic(_sidecar(path), json.dumps(side, indent=1, sort_keys=True).encode(), fsync=fsync)
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, meta)`` of a checkpoint; the sidecar's sha256 (if present) must match."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise ValueError(f"checkpoint {path}: cannot read it ({e.strerror or e})") from None
    side = _sidecar(path)
    if side.exists():
        want = json.loads(side.read_text()).get("sha256")
        got = hashlib.sha256(blob).hexdigest()
        if want is not None and want != got:
            raise ValueError(f"checkpoint {path}: sha256 {got[:12]}... does not match its sidecar "
                             f"({want[:12]}...): the file is damaged or from another save")
    try:
        tensors = st_load(blob)
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"checkpoint {path}: not a safetensors file ({e})") from None
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get(_META_KEY)
    if raw is None:
        raise CheckpointMismatchError(f"checkpoint {path}: no {_META_KEY} metadata (a policy "
                                      "export, or not written by robot_rl?)")
    meta = json.loads(raw)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(f"checkpoint {path}: format {meta.get('format')!r}, "
                                      f"expected {CHECKPOINT_FORMAT!r}")
    return tensors, meta


def load_checkpoint(path: str | Path, learner: Any, *, sampler: Any = None) -> dict[str, Any]:
    """Restore ``learner`` (and ``sampler``) from ``path``; return the meta (``meta["extra"]``
    holds the caller's state, ``meta["extra_tensors"]`` its tensors)."""
    tensors, meta = read_checkpoint(path)
    diff = architecture_difference(meta["architecture"], learner.architecture(),
                                   saved_spec=meta.get("observation_spec"),
                                   my_spec=getattr(learner, "observation", None))
    if diff:
        raise CheckpointMismatchError(
            f"checkpoint {path} was written for another architecture:\n  " + "\n  ".join(diff))
    learner.load_state({k[len("learner."):]: v for k, v in tensors.items()
                        if k.startswith("learner.")}, meta["learner"])
    if sampler is not None:
        if meta.get("sampler") is None:
            raise ValueError(f"checkpoint {path}: holds no sampler state")
        arrays = {k[len("sampler."):]: v.numpy() for k, v in tensors.items()
                  if k.startswith("sampler.")}
        sampler.load_state_dict(arrays, meta["sampler"])
    meta["extra_tensors"] = {k[len("extra."):]: v for k, v in tensors.items()
                             if k.startswith("extra.")}
    return meta


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest ``ckpt_*.safetensors`` with a sidecar in ``directory`` (by step in the name)."""
    d = Path(directory)
    found = sorted(p for p in d.glob("ckpt_*.safetensors") if _sidecar(p).exists())
    return found[-1] if found else None


# --------------------------------------------------------------------------- policy export


def policy_architecture(learner: Any) -> dict[str, Any]:
    """The exported policy's architecture: its shapes and, when the learner has one, the
    observation spec's signature and hash (an actor refuses a policy of another observation
    layout by its config hash)."""
    cfg = learner.config
    arch = {"kind": "gaussian" if cfg.stochastic_actor else "deterministic",
            "obs_dim": learner.obs_dim, "act_dim": learner.act_dim,
            "hidden": [int(h) for h in cfg.hidden], "obs_normalization": cfg.obs_normalization,
            "obs_clip": cfg.obs_clip}
    if getattr(learner, "observation", None) is not None:
        from robot_rl.agents.base import observation_architecture

        arch.update(observation_architecture(learner.observation))
    return arch


def export_policy(learner: Any, version: int = 0) -> bytes:
    """The actor (weights, action bounds, normaliser) as safetensors bytes: the ``PolicyWeights``
    payload. Metadata: format, architecture (JSON), config_hash, version."""
    arch = policy_architecture(learner)
    tensors = {k: v.detach().cpu().contiguous().clone()
               for k, v in learner.actor.state_dict().items()}
    return st_save(tensors, metadata={"format": POLICY_FORMAT, "architecture": json.dumps(arch),
                                      "config_hash": config_hash(arch), "version": str(int(version))})


@dataclass
class LoadedPolicy:
    """A policy rebuilt from :func:`export_policy` bytes."""

    actor: torch.nn.Module
    architecture: dict[str, Any]
    config_hash: str
    version: int

    @torch.inference_mode()
    def __call__(self, observation: Any) -> np.ndarray:
        """Deterministic action(s) for observation(s) ``(obs_dim,)`` / ``(N, obs_dim)``."""
        obs = torch.as_tensor(np.asarray(observation, dtype=np.float32))
        single = obs.ndim == 1
        dim = self.architecture["obs_dim"]
        if obs.shape[-1] != dim or obs.ndim > 2:
            raise ValueError(f"observation: expected shape ({dim},) or (N, {dim}), got "
                             f"{tuple(obs.shape)}")
        a = self.actor(obs.unsqueeze(0) if single else obs).numpy()
        return a[0] if single else a


def load_policy(blob: bytes, *, expect_hash: str | None = None) -> LoadedPolicy:
    """Rebuild the actor from :func:`export_policy` bytes (``expect_hash``: refuse another)."""
    try:
        tensors = st_load(bytes(blob))
    except Exception as e:
        raise ValueError(f"policy weights: not a safetensors blob ({e})") from None
    meta = _safetensors_metadata(bytes(blob))
    if meta.get("format") != POLICY_FORMAT:
        raise ValueError(f"policy weights: format {meta.get('format')!r}, expected {POLICY_FORMAT!r}")
    arch = json.loads(meta["architecture"])
    h = meta.get("config_hash", "")
    if h != config_hash(arch):
        raise ValueError(f"policy weights: config_hash {h!r} does not match the architecture")
    if expect_hash is not None and h != expect_hash:
        raise ValueError(f"policy weights: config_hash {h!r}, this actor expects {expect_hash!r}")
    norm = RunningNormalizer(arch["obs_dim"], clip=arch["obs_clip"],
                             enabled=arch["obs_normalization"])
    cls = GaussianActor if arch["kind"] == "gaussian" else Actor
    actor = cls(arch["obs_dim"], arch["act_dim"], tuple(arch["hidden"]), normalizer=norm,
                low=tensors["action_low"], high=tensors["action_high"])
    actor.load_state_dict(tensors, strict=True)
    actor.eval()
    return LoadedPolicy(actor, arch, h, int(meta.get("version", 0)))


def _safetensors_metadata(blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob (8-byte little-endian header size + JSON)."""
    if len(blob) < 8:
        raise ValueError("policy weights: blob too short")
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    return header.get("__metadata__") or {}
