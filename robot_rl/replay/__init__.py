"""Replay: the durable zarr store (one writer, many readers) and the in-memory sampler.

* :class:`ReplayWriter` -- the single writer (the replay node): validates, deduplicates and
  commits transitions atomically; :meth:`ReplayWriter.acks` feeds ``ReplayAck``.
* :class:`ReplayReader` -- read-only access to committed rows through any zarr/fsspec store.
* :class:`ReplayMirror` / :class:`ReplaySampler` -- the learner's RAM mirror of the store and
  its uniform / prioritized, n-step sampling into typed torch batches (:class:`Batch`).

ROS-free; imports neither rclpy nor pybullet. The store module does not import torch either,
so the writer process stays light.
"""
from robot_rl.replay.schema import COLUMN_NAMES, SCHEMA_VERSION, Source, transition_dtype
from robot_rl.replay.store import (
    AppendResult,
    CommitInfo,
    ReplayReader,
    ReplayWriter,
    StoreError,
    WriterStats,
    lock_path,
)
from robot_rl.replay.lock import StoreLockedError

__all__ = [
    "COLUMN_NAMES", "SCHEMA_VERSION", "Source", "transition_dtype", "AppendResult", "CommitInfo",
    "ReplayReader", "ReplayWriter", "StoreError", "StoreLockedError", "WriterStats", "lock_path",
    "ReplayMirror", "ReplaySampler", "Batch",
]

_LAZY = {"ReplayMirror": "robot_rl.replay.mirror", "ReplaySampler": "robot_rl.replay.sampler",
         "Batch": "robot_rl.replay.sampler"}


def __getattr__(name: str):
    # The sampler needs torch (seconds to import); the writer process should not pay for it.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'robot_rl.replay' has no attribute {name!r}")
