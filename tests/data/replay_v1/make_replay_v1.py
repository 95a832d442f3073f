"""How tests/data/replay_v1/replay.zarr was written: by robot_rl at commit 5416070, the last
version of the replay schema 1 (one array per Transition column, the observation one flat
array), then the attribute ``observation_fields`` (null here) removed, as every version before
5416070 wrote it. Kept for the record: robot_rl no longer writes schema 1 stores."""
import numpy as np
from robot_rl.config import config_from_dict, ReplayConfig
from robot_rl.replay.store import ReplayWriter
from robot_rl.sim.env import PandaEnv

cfg = config_from_dict({"task": {"name": "reach", "action_mode": "ee_velocity", "max_steps": 12}})
env = PandaEnv(cfg)
rng = np.random.default_rng(5)
out = "tests/data/replay_v1/replay.zarr"
w = ReplayWriter(out, env.task.observation_spec, env.mapper.spec,
                 ReplayConfig(chunk_rows=16, fsync=False))
for robot, session, episodes, source in ((0, 0x1111, 3, 0), (1, 0x2222, 2, 1)):
    seq = 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        for k in range(12):
            a = rng.uniform(-1, 1, 3).astype(np.float32)
            nobs, r, term, trunc, info = env.step(a)
            w.append(observation=obs, action=a, next_observation=nobs, reward=r, terminated=term,
                     truncated=trunc, source=source, robot_id=robot, actor_session=session,
                     seq=seq, episode_id=(session << 8) + ep, step_index=k,
                     stamp_ns=seq * 50_000_000, policy_version=ep, safety_rules=k % 3)
            seq += 1
            obs = nobs
            if term or trunc:
                break
    w.flush()
print(w.committed_length, w.acks)
w.close()
