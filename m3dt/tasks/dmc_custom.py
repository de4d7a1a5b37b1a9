"""The 11 custom DeepMind Control tasks of the MT160 benchmark, built on dm_control.

The M3DT authors took these tasks from TD-MPC2. Each is a new task class on the physics of
a stock dm_control domain, with the stock observation dict (same keys, same order) and the
stock time limit (1000 control steps). Action repeat is added later, by
`m3dt.tasks.envs.dmc.DMCEnv`, not here.

`tol` below is `dm_control.utils.rewards.tolerance` (default sigmoid 'gaussian',
value_at_margin 0.1); s is a target speed.

==========================  ==============================================================
task                        reward
==========================  ==============================================================
walker-walk-backwards       stand · (5·tol(v_x, (−inf, −s), s/2, 0.5, linear) + 1)/6, s=1
walker-run-backwards        same with s = 8
cheetah-run-backwards       tol(v_x, (−inf, −8), margin 8, 0, linear)
cheetah-run-front           up(bfoot) · (5·tol(v_x, (6, inf), 6, 0, linear) + 1)/6
cheetah-run-back            up(ffoot) · (5·tol(v_x, (6, inf), 6, 0, linear) + 1)/6
cheetah-jump                (stand_one_foot(bfoot) + stand_one_foot(ffoot))/2
hopper-hop-backwards        tol(height, (0.6, 2)) · tol(v_x, (−inf, −1), 0.5, 0.5, linear)
reacher-three-easy / -hard  1 if |finger − target| ≤ target radius (0.05 / 0.015) + finger
                            radius (0.01), else 0 (dm_control reacher's sparse reward)
cup-spin                    (1 − in_target) · (tol(|ball − target|, (0.5, inf), 0.25, 0.5,
                            linear) + 2·tol(|v_ball|, (6, inf), 3, 0.5, linear))/3
pendulum-spin               tol(|ω|, (9, inf), margin 4.5, 0.5, linear)
==========================  ==============================================================

with, for the walker, stand = (3·tol(torso_z, (1.2, inf), 0.6) + (1 + torso_upright)/2)/4;
for the cheetah, up(foot) = (3·tol(foot_z, (1.2, inf), 0.6) + 2·tol(torso_z, (1.2, inf),
0.6))/5 and stand_one_foot(foot) = (5·tol((torso_z + foot_z)/2, (1.2, inf), 0.6) +
tol(v_x, (−0.5, 0.5), 0.5, 0, linear))/6, where `foot` is the raised foot.

Models: walker and cheetah use dm_control's XML with a longer floor (walker 500 instead of
250, cheetah 200 instead of 100, as in the authors' XMLs), so fast backwards runs stay on
the ground plane; hopper, ball-in-cup and pendulum use the stock models unchanged; the
three-link reacher is `assets/reacher_three_links.xml`.

>>> env = CUSTOM_TASKS["cheetah-run-backwards"](random=0)
>>> ts = env.reset()
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from importlib import resources
from typing import Callable, Union

import numpy as np
from dm_control.rl import control
from dm_control.suite import ball_in_cup, base, cheetah, common, hopper, pendulum, reacher, walker
from dm_control.utils import rewards

__all__ = [
    "CUSTOM_TASKS",
    "BackwardsPlanarWalker",
    "CheetahRunBackwards",
    "CheetahRunOneFoot",
    "CheetahJump",
    "HopperHopBackwards",
    "ThreeLinkReacher",
    "CupSpin",
    "PendulumSpin",
]

Random = Union[int, np.random.RandomState, None]

_INF = float("inf")

# Constants of the stock dm_control domains (same values as dm_control's private ones).
WALKER_STAND_HEIGHT = 1.2
WALKER_WALK_SPEED = 1.0
WALKER_RUN_SPEED = 8.0
CHEETAH_RUN_SPEED = 10.0
CHEETAH_JUMP_HEIGHT = 1.2  # torso / raised-foot height of the one-foot tasks
HOPPER_STAND_HEIGHT = 0.6
HOPPER_HOP_SPEED = 2.0
REACHER_EASY_RADIUS = 0.05
REACHER_HARD_RADIUS = 0.015
CUP_SPIN_DISTANCE = 0.5
CUP_SPIN_SPEED = 6.0
CUP_START_OUTSIDE_PROB = 0.1  # cup-spin episodes that may start with the ball out of the cup
PENDULUM_SPIN_SPEED = 9.0

# Stock time limits (seconds) and control timesteps: 1000 control steps in every domain.
_WALKER_TIME_LIMIT, _WALKER_CONTROL_TIMESTEP = 25.0, 0.025  # physics dt 0.0025
_CHEETAH_TIME_LIMIT = 10.0  # control timestep = physics dt 0.01
_HOPPER_TIME_LIMIT, _HOPPER_CONTROL_TIMESTEP = 20.0, 0.02  # physics dt 0.005
_REACHER_TIME_LIMIT = 20.0  # control timestep = physics dt 0.02
_CUP_TIME_LIMIT, _CUP_CONTROL_TIMESTEP = 20.0, 0.02  # physics dt 0.01
_PENDULUM_TIME_LIMIT = 20.0  # control timestep = physics dt 0.02

_WALKER_FLOOR_LENGTH = 500.0  # dm_control: 250
_CHEETAH_FLOOR_LENGTH = 200.0  # dm_control: 100


def _linear_tol(x, bounds: tuple[float, float], margin: float, value_at_margin: float) -> float:
    return float(rewards.tolerance(x, bounds=bounds, margin=margin, value_at_margin=value_at_margin,
                                   sigmoid="linear"))


# --------------------------------------------------------------------------------------------
# Models


@functools.lru_cache(maxsize=None)
def _stock_xml_with_floor(model_file: str, floor_geom: str, half_length: float) -> bytes:
    """dm_control's `model_file` with the plane `floor_geom` `half_length` long in x."""
    root = ET.fromstring(common.read_model(model_file))
    floors = [g for g in root.iter("geom") if g.get("name") == floor_geom]
    assert len(floors) == 1, f"{model_file}: expected one geom named {floor_geom!r}"
    size = floors[0].get("size", "").split()
    assert len(size) == 3, size
    size[0] = f"{half_length:g}"
    floors[0].set("size", " ".join(size))
    return ET.tostring(root, encoding="utf-8")


@functools.lru_cache(maxsize=None)
def _reacher_three_xml() -> bytes:
    return resources.files("m3dt.tasks").joinpath("assets/reacher_three_links.xml").read_bytes()


def walker_physics() -> walker.Physics:
    return walker.Physics.from_xml_string(
        _stock_xml_with_floor("walker.xml", "floor", _WALKER_FLOOR_LENGTH), common.ASSETS)


def cheetah_physics() -> cheetah.Physics:
    return cheetah.Physics.from_xml_string(
        _stock_xml_with_floor("cheetah.xml", "ground", _CHEETAH_FLOOR_LENGTH), common.ASSETS)


def reacher_three_physics() -> reacher.Physics:
    return reacher.Physics.from_xml_string(_reacher_three_xml(), common.ASSETS)


# --------------------------------------------------------------------------------------------
# Tasks


class BackwardsPlanarWalker(walker.PlanarWalker):
    """Walker: stand upright and move in −x at `move_speed` or faster.

    reward = stand · (5·move + 1)/6 with stand = (3·tol(torso_z, (1.2, inf), 0.6) +
    (1 + torso_upright)/2)/4 and move = tol(v_x, (−inf, −s), s/2, 0.5, linear).
    """

    def get_reward(self, physics: walker.Physics) -> float:
        standing = rewards.tolerance(physics.torso_height(), bounds=(WALKER_STAND_HEIGHT, _INF),
                                     margin=WALKER_STAND_HEIGHT / 2)
        upright = (1 + physics.torso_upright()) / 2
        stand = (3 * standing + upright) / 4
        s = self._move_speed
        move = _linear_tol(physics.horizontal_velocity(), (-_INF, -s), s / 2, 0.5)
        return float(stand * (5 * move + 1) / 6)


class CheetahRunBackwards(cheetah.Cheetah):
    """Cheetah: run in −x; reward = tol(v_x, (−inf, −s), margin s, 0, linear), s = 8."""

    def __init__(self, speed: float = 0.8 * CHEETAH_RUN_SPEED, random: Random = None):
        self._speed = speed
        super().__init__(random=random)

    def get_reward(self, physics: cheetah.Physics) -> float:
        s = self._speed
        return _linear_tol(physics.speed(), (-_INF, -s), s, 0.0)


def _cheetah_heights(physics: cheetah.Physics, raised_foot: str) -> tuple[float, float]:
    z = physics.named.data.xpos
    return float(z["torso", "z"]), float(z[raised_foot, "z"])


class CheetahRunOneFoot(cheetah.Cheetah):
    """Cheetah: run forwards on one foot, keeping `raised_foot` (and the torso) up high.

    reward = up · (5·tol(v_x, (s, inf), s, 0, linear) + 1)/6 with s = 6 and
    up = (3·tol(foot_z, (1.2, inf), 0.6) + 2·tol(torso_z, (1.2, inf), 0.6))/5.
    run-front raises `bfoot` (runs on the front foot), run-back raises `ffoot`.
    """

    def __init__(self, raised_foot: str, speed: float = 0.6 * CHEETAH_RUN_SPEED, random: Random = None):
        assert raised_foot in ("bfoot", "ffoot"), raised_foot
        self._raised_foot = raised_foot
        self._speed = speed
        super().__init__(random=random)

    def get_reward(self, physics: cheetah.Physics) -> float:
        torso_z, foot_z = _cheetah_heights(physics, self._raised_foot)
        h, m = CHEETAH_JUMP_HEIGHT, CHEETAH_JUMP_HEIGHT / 2
        torso_up = rewards.tolerance(torso_z, bounds=(h, _INF), margin=m)
        foot_up = rewards.tolerance(foot_z, bounds=(h, _INF), margin=m)
        up = (3 * foot_up + 2 * torso_up) / 5
        s = self._speed
        hspeed = _linear_tol(physics.speed(), (s, _INF), s, 0.0)
        return float(up * (5 * hspeed + 1) / 6)


class CheetahJump(cheetah.Cheetah):
    """Cheetah: stand up on either foot, nearly still; the mean of two one-foot rewards.

    stand(foot) = (5·tol((torso_z + foot_z)/2, (1.2, inf), 0.6) +
    tol(v_x, (−0.5, 0.5), 0.5, 0, linear))/6 with `foot` the raised one;
    reward = (stand(bfoot) + stand(ffoot))/2.
    """

    def __init__(self, max_speed: float = 0.5, random: Random = None):
        self._max_speed = max_speed
        super().__init__(random=random)

    def stand_one_foot(self, physics: cheetah.Physics, raised_foot: str) -> float:
        torso_z, foot_z = _cheetah_heights(physics, raised_foot)
        height = rewards.tolerance((torso_z + foot_z) / 2, bounds=(CHEETAH_JUMP_HEIGHT, _INF),
                                   margin=CHEETAH_JUMP_HEIGHT / 2)
        v = self._max_speed
        still = _linear_tol(physics.speed(), (-v, v), v, 0.0)
        return float((5 * height + still) / 6)

    def get_reward(self, physics: cheetah.Physics) -> float:
        return (self.stand_one_foot(physics, "bfoot") + self.stand_one_foot(physics, "ffoot")) / 2


class HopperHopBackwards(hopper.Hopper):
    """Hopper: hop in −x; reward = tol(height, (0.6, 2)) · tol(v_x, (−inf, −1), 0.5, 0.5, linear)."""

    def __init__(self, random: Random = None):
        super().__init__(hopping=True, random=random)

    def get_reward(self, physics: hopper.Physics) -> float:
        standing = rewards.tolerance(physics.height(), (HOPPER_STAND_HEIGHT, 2))
        s = HOPPER_HOP_SPEED
        hopping = _linear_tol(physics.speed(), (-_INF, -s / 2), s / 4, 0.5)
        return float(standing * hopping)


class ThreeLinkReacher(reacher.Reacher):
    """Three-link reacher: touch a randomly placed target with the fingertip.

    Everything but the arm is dm_control's reacher: each episode draws the joint angles
    uniformly (within limits), the target at angle U(0, 2π), radius U(0.05, 0.2), and the
    sparse reward is 1 when |finger − target| ≤ target radius + finger radius (0.01).
    Observation: position (3 joint angles), to_target (target − finger, x and y),
    velocity (3).
    """


class CupSpin(ball_in_cup.BallInCup):
    """Ball-in-cup: swing the ball fast around the cup while keeping it out of the cup.

    reward = (1 − in_target) · (tol(|ball − target|, (0.5, inf), 0.25, 0.5, linear) +
    2·tol(|(v_ball_x, v_ball_z)|, (6, inf), 3, 0.5, linear))/3.

    As in the authors' task, episodes start with the ball resting inside the cup, except a
    fraction `CUP_START_OUTSIDE_PROB` that start from dm_control's usual random position
    (anywhere collision-free).
    """

    def initialize_episode(self, physics: ball_in_cup.Physics) -> None:
        may_start_outside = self.random.uniform() < CUP_START_OUTSIDE_PROB
        while True:
            physics.named.data.qpos["ball_x"] = self.random.uniform(-0.2, 0.2)
            physics.named.data.qpos["ball_z"] = self.random.uniform(0.2, 0.5)
            physics.after_reset()
            if physics.data.ncon == 0 and (may_start_outside or physics.in_target()):
                break
        base.Task.initialize_episode(self, physics)  # skip BallInCup's own placement

    def get_reward(self, physics: ball_in_cup.Physics) -> float:
        dist = np.linalg.norm(physics.ball_to_target())
        ball_speed = np.linalg.norm(physics.named.data.qvel[["ball_x", "ball_z"]])
        dist_reward = _linear_tol(dist, (CUP_SPIN_DISTANCE, _INF), CUP_SPIN_DISTANCE / 2, 0.5)
        vel_reward = _linear_tol(ball_speed, (CUP_SPIN_SPEED, _INF), CUP_SPIN_SPEED / 2, 0.5)
        return float((1 - physics.in_target()) * (dist_reward + 2 * vel_reward) / 3)


class PendulumSpin(pendulum.SwingUp):
    """Pendulum: spin fast either way; reward = tol(|ω|, (9, inf), 4.5, 0.5, linear)."""

    def get_reward(self, physics: pendulum.Physics) -> float:
        omega = float(np.abs(physics.angular_velocity()).max())
        return _linear_tol(omega, (PENDULUM_SPIN_SPEED, _INF), PENDULUM_SPIN_SPEED / 2, 0.5)


# --------------------------------------------------------------------------------------------
# Environments


def walker_walk_backwards(random: Random = None) -> control.Environment:
    return control.Environment(walker_physics(), BackwardsPlanarWalker(WALKER_WALK_SPEED, random=random),
                               time_limit=_WALKER_TIME_LIMIT, control_timestep=_WALKER_CONTROL_TIMESTEP)


def walker_run_backwards(random: Random = None) -> control.Environment:
    return control.Environment(walker_physics(), BackwardsPlanarWalker(WALKER_RUN_SPEED, random=random),
                               time_limit=_WALKER_TIME_LIMIT, control_timestep=_WALKER_CONTROL_TIMESTEP)


def cheetah_run_backwards(random: Random = None) -> control.Environment:
    return control.Environment(cheetah_physics(), CheetahRunBackwards(random=random),
                               time_limit=_CHEETAH_TIME_LIMIT)


def cheetah_run_front(random: Random = None) -> control.Environment:
    return control.Environment(cheetah_physics(), CheetahRunOneFoot("bfoot", random=random),
                               time_limit=_CHEETAH_TIME_LIMIT)


def cheetah_run_back(random: Random = None) -> control.Environment:
    return control.Environment(cheetah_physics(), CheetahRunOneFoot("ffoot", random=random),
                               time_limit=_CHEETAH_TIME_LIMIT)


def cheetah_jump(random: Random = None) -> control.Environment:
    return control.Environment(cheetah_physics(), CheetahJump(random=random), time_limit=_CHEETAH_TIME_LIMIT)


def hopper_hop_backwards(random: Random = None) -> control.Environment:
    physics = hopper.Physics.from_xml_string(*hopper.get_model_and_assets())
    return control.Environment(physics, HopperHopBackwards(random=random),
                               time_limit=_HOPPER_TIME_LIMIT, control_timestep=_HOPPER_CONTROL_TIMESTEP)


def reacher_three_easy(random: Random = None) -> control.Environment:
    return control.Environment(reacher_three_physics(), ThreeLinkReacher(REACHER_EASY_RADIUS, random=random),
                               time_limit=_REACHER_TIME_LIMIT)


def reacher_three_hard(random: Random = None) -> control.Environment:
    return control.Environment(reacher_three_physics(), ThreeLinkReacher(REACHER_HARD_RADIUS, random=random),
                               time_limit=_REACHER_TIME_LIMIT)


def cup_spin(random: Random = None) -> control.Environment:
    physics = ball_in_cup.Physics.from_xml_string(*ball_in_cup.get_model_and_assets())
    return control.Environment(physics, CupSpin(random=random),
                               time_limit=_CUP_TIME_LIMIT, control_timestep=_CUP_CONTROL_TIMESTEP)


def pendulum_spin(random: Random = None) -> control.Environment:
    physics = pendulum.Physics.from_xml_string(*pendulum.get_model_and_assets())
    return control.Environment(physics, PendulumSpin(random=random), time_limit=_PENDULUM_TIME_LIMIT)


CUSTOM_TASKS: dict[str, Callable[..., control.Environment]] = {
    "walker-walk-backwards": walker_walk_backwards,
    "walker-run-backwards": walker_run_backwards,
    "cheetah-run-backwards": cheetah_run_backwards,
    "cheetah-run-front": cheetah_run_front,
    "cheetah-run-back": cheetah_run_back,
    "cheetah-jump": cheetah_jump,
    "hopper-hop-backwards": hopper_hop_backwards,
    "reacher-three-easy": reacher_three_easy,
    "reacher-three-hard": reacher_three_hard,
    "cup-spin": cup_spin,
    "pendulum-spin": pendulum_spin,
}
