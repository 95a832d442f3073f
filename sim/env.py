"""Gymnasium environments: ``PandaReach-v0`` and ``PandaPush-v0`` (one simulated Panda).

The env is a thin loop around three ROS-free pieces that the real robot shares: the task
(:mod:`robot_rl.tasks`: observation, reward, success), the action map
(:mod:`robot_rl.actions`) and the PyBullet world (:mod:`robot_rl.sim.panda`).

Episode ends are kept apart, as DESIGN §8 and every off-policy learner need:
``terminated`` — success with ``task.terminate_on_success`` (no bootstrap);
``truncated`` — the time limit ``task.max_steps`` (bootstrap through it).

``info`` carries ``is_success``, ``distance`` and ``joint_velocities`` (the command applied),
and, goal-conditioned as gymnasium-robotics' ``GoalEnv``, ``achieved_goal`` and ``desired_goal``
(float64, ``task.goal_dim``; at reset too): the env's reward is
``env.unwrapped.compute_reward(info["achieved_goal"], info["desired_goal"], info)``, vectorised
over batches of goals for relabelling. The observation is the flat Box by default (the goals sit
in it at ``env.unwrapped.task.goal_slices``); ``observation_layout="fields"`` gives a ``Dict`` per
observation field, ``"goal"`` gymnasium-robotics' ``observation`` / ``achieved_goal`` /
``desired_goal`` ``Dict`` (``gymnasium.make("PandaReach-v0", observation_layout="goal")``).

``safety=True`` puts the safety node's filter (:class:`robot_rl.safety.SafetyFilter` with
``config.safety``, one output per control step, as the graph's safety node in ``proposal``
mode) between the action and the arm: the env then behaves as the ROS graph does, which is how
the learner node evaluates a policy trained through the graph. ``info["safety_rules"]`` holds
the rules that fired, ``info["applied_action"]`` the applied command in the action space (what
an actor node stores; the trainer's ``run.train_through_safety``).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.actions import ActionMapper
from robot_rl.config import Config, config_from_dict
from robot_rl.sim.multi import EpisodeStarts
from robot_rl.sim.panda import PandaWorld
from robot_rl.tasks import TaskSnapshot, make_task


def _with_overrides(config: Config | None, task: dict[str, Any]) -> Config:
    base = (config or Config()).model_dump(mode="json")
    if task:
        base["task"] = {**base["task"], **task}
    return config_from_dict(base, source="PandaEnv arguments")


class PandaEnv(gym.Env):
    """One Panda, one task, joint-velocity control at ``sim.control_hz``.

    Args:
        config: the full run config (defaults if None).
        task, reward, action_mode, max_steps: shortcuts that override ``config.task``.
        render_mode: None or ``"rgb_array"``.
        observation_layout: ``"flat"`` (default): the float32 vector (``task.observation_spec``,
            a ``Box``); ``"fields"``: a ``Dict`` with one ``Box`` per observation field
            (``task.obs_spec``: ``q``, ``dq``, ``ee_pos``, ``goal``, ...); ``"goal"``:
            gymnasium-robotics' goal-env ``Dict`` -- ``observation`` (every field that is not a
            goal, concatenated), ``achieved_goal``, ``desired_goal`` -- which Stable-Baselines3's
            ``HerReplayBuffer`` and ``MultiInputPolicy`` take, with :meth:`compute_reward`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        config: Config | None = None,
        *,
        task: str | None = None,
        reward: str | None = None,
        action_mode: str | None = None,
        max_steps: int | None = None,
        render_mode: str | None = None,
        safety: bool = False,
        observation_layout: str = "flat",
    ):
        overrides = {k: v for k, v in (("name", task), ("reward", reward),
                                       ("action_mode", action_mode), ("max_steps", max_steps))
                     if v is not None}
        self.config = _with_overrides(config, overrides)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: expected one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.render_mode = render_mode
        cfg = self.config
        self.metadata = {**self.metadata, "render_fps": cfg.sim.control_hz}
        self.task = make_task(cfg.task, cfg.robot)
        self.mapper = ActionMapper(cfg.task, cfg.robot)
        self.world = PandaWorld(cfg.sim, cfg.robot, num_robots=1,
                                with_objects=self.task.has_object, object_size=cfg.task.object_size)
        if observation_layout not in ("flat", "fields", "goal"):
            raise ValueError(f"observation_layout: expected 'flat', 'fields' or 'goal', got "
                             f"{observation_layout!r}")
        self.observation_layout = observation_layout
        self.observation_space = self._space()
        self.action_space = self.mapper.spec.to_gym()
        self._max_steps = cfg.task.max_steps
        self._terminate_on_success = cfg.task.terminate_on_success
        self._success_threshold = cfg.task.success_threshold
        # Only the ee_velocity map reads q (for its Jacobian); the joint map ignores it.
        self._map_needs_q = self.mapper.mode != "joint"
        self._safety = None
        if safety:
            from robot_rl.safety import SafetyFilter

            self._safety = SafetyFilter(cfg.robot, cfg.safety, control_hz=cfg.sim.control_hz)
            self._map_needs_q = True
        self._t = 0.0
        self._starts = EpisodeStarts(cfg, self.task)
        self._goal = np.zeros(3)
        self._steps = 0
        self._needs_reset = True
        spec = self.task.observation_spec
        self._obs_lo = spec.low.astype(np.float32)
        self._obs_hi = spec.high.astype(np.float32)
        #: observations clipped into the observation spec (physics spikes), and the last one
        self.observation_clips = 0
        self.last_clip: str | None = None

    # -- helpers ----------------------------------------------------------------------------

    def _groups(self) -> dict[str, list[slice]]:
        """Dict key -> slices of the flat observation it is made of (``fields`` / ``goal``)."""
        spec = self.task.obs_spec
        if self.observation_layout == "fields":
            return {k: [sl] for k, sl in spec.slices.items()}
        roles = {f.key: f.role for f in spec.fields}
        rest = [sl for k, sl in spec.slices.items()
                if roles[k] not in ("achieved_goal", "desired_goal")]
        return {"observation": rest, "achieved_goal": [self.task.goal_slices["achieved_goal"]],
                "desired_goal": [self.task.goal_slices["desired_goal"]]}

    def _space(self) -> gym.Space:
        flat = self.task.observation_spec
        if self.observation_layout == "flat":
            return flat.to_gym()
        from gymnasium import spaces

        self._dict_groups = self._groups()
        out = {}
        for key, sls in self._dict_groups.items():
            idx = np.concatenate([np.arange(sl.start, sl.stop) for sl in sls])
            out[key] = spaces.Box(flat.low[idx].copy(), flat.high[idx].copy(), dtype=np.float32)
        return spaces.Dict(out)

    def _format(self, obs: np.ndarray) -> Any:
        """The flat observation in :attr:`observation_layout`."""
        if self.observation_layout == "flat":
            return obs
        return {k: (obs[sls[0]].copy() if len(sls) == 1
                    else np.concatenate([obs[sl] for sl in sls]))
                for k, sls in self._dict_groups.items()}

    def _observe(self, s: TaskSnapshot) -> tuple[np.ndarray, str | None]:
        """The task's observation, clipped into the observation spec.

        A physics spike can push a value past its bound (a CI run saw the wrist at 5.37 rad/s
        against the spec's 5.22, twice Franka's 2.61 rad/s limit, with at most 1.3 rad/s
        commanded): such a row would be refused by the replay store and end a training run.
        The clipped observation is returned instead, counted in :attr:`observation_clips`, and
        described (``None`` when nothing was clipped)."""
        obs = self.task.observation(s)
        lo, hi = self._obs_lo, self._obs_hi
        out = (obs < lo) | (obs > hi) | ~np.isfinite(obs)
        if not out.any():
            return obs, None
        names = self.task.observation_spec.names
        what = ", ".join(f"{names[i]} = {float(obs[i]):.6g} outside [{lo[i]:g}, {hi[i]:g}]"
                         for i in np.flatnonzero(out)[:3])
        self.observation_clips += 1
        self.last_clip = f"episode step {self._steps}: {what}"
        obs = np.clip(np.nan_to_num(obs, nan=0.0, posinf=hi, neginf=lo), lo, hi)
        return obs.astype(np.float32), what

    def _snapshot(self) -> TaskSnapshot:
        q, dq = self.world.joint_state(0)
        return TaskSnapshot(q=q, dq=dq, ee_pos=self.world.ee_position(0), goal=self._goal,
                            object_pose=self.world.object_pose(0))

    @property
    def goal(self) -> np.ndarray:
        return self._goal.copy()

    def snapshot(self) -> TaskSnapshot:
        """The current state as the task sees it (for scripted controllers and tests)."""
        return self._snapshot()

    # -- gym API ----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        q0, self._goal, obj = self._starts.sample(self.np_random)
        self.world.reset_robot(0, q0)
        if obj is not None:
            self.world.set_object_pose(0, obj)
        self._steps = 0
        self._needs_reset = False
        if self._safety is not None:
            self._safety.reset()  # the arm starts at rest
        s = self._snapshot()
        d = self.task.distance(s)
        obs, clipped = self._observe(s)
        info = {"is_success": False, "distance": d, "goal": self._goal.copy(),
                "achieved_goal": self.task.achieved_goal(s),
                "desired_goal": self.task.desired_goal(s)}
        if clipped:
            info["observation_clipped"] = clipped
        return self._format(obs), info

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("step() called before reset() or after the episode ended")
        world, task = self.world, self.task
        q = world.joint_state(0)[0] if self._map_needs_q else None
        dq_cmd = self.mapper.to_joint_velocities(action, q)
        rules = 0
        if self._safety is not None:
            dq_cmd, report = self._safety.step(self._t, dq_cmd, q=q, state_stamp=self._t)
            rules = int(report.rules)
            self._t += self.config.sim.control_dt
        world.set_joint_velocities(0, dq_cmd)
        world.step()
        self._steps += 1
        s = self._snapshot()
        d = task.distance(s)
        success = d < self._success_threshold
        reward = task.reward_from_distance(d)
        terminated = bool(success and self._terminate_on_success)
        truncated = bool(self._steps >= self._max_steps and not terminated)
        self._needs_reset = terminated or truncated
        info = {"is_success": bool(success), "distance": d, "joint_velocities": dq_cmd,
                "achieved_goal": task.achieved_goal(s), "desired_goal": task.desired_goal(s)}
        if self._safety is not None:
            info["safety_rules"] = rules
            # the command the filter let through, in the action space (clipped to the box as
            # robot_rl.actor.ActorCore.applied_action does): what an actor node stores
            info["applied_action"] = np.clip(self.mapper.to_action(dq_cmd, q),
                                             self.mapper.spec.low,
                                             self.mapper.spec.high).astype(np.float32)
        obs, clipped = self._observe(s)
        if clipped:
            info["observation_clipped"] = clipped
        return self._format(obs), reward, terminated, truncated, info

    # -- goal-conditioned (gymnasium-robotics' GoalEnv signatures) ---------------------------

    def compute_reward(self, achieved_goal, desired_goal, info=None) -> np.ndarray:
        """The task's reward for goals of shape ``(..., goal_dim)`` (batch dims broadcast):
        :meth:`robot_rl.tasks.Task.compute_reward`. ``step``'s reward equals it for the step's
        ``info["achieved_goal"]``, ``info["desired_goal"]``; ``info`` is not read."""
        return self.task.compute_reward(achieved_goal, desired_goal, info)

    def compute_terminated(self, achieved_goal, desired_goal, info=None) -> np.ndarray:
        """Whether those goals end an episode (success with ``task.terminate_on_success``):
        :meth:`robot_rl.tasks.Task.compute_terminated`, equal to ``step``'s ``terminated``."""
        return self.task.compute_terminated(achieved_goal, desired_goal, info)

    def render(self):
        if self.render_mode == "rgb_array":
            return self.world.render(0)
        return None

    def close(self):
        self.world.close()
