"""The 11 custom DeepMind Control tasks: models, interface, and rewards on crafted states."""

from __future__ import annotations

import numpy as np
import pytest
from dm_control import suite

from m3dt.tasks.dmc_custom import CUSTOM_TASKS, CheetahJump

# name -> (flat obs dim, action dim, stock dm_control (domain, task) with the same observation keys)
EXPECTED = {
    "walker-walk-backwards": (24, 6, ("walker", "walk")),
    "walker-run-backwards": (24, 6, ("walker", "run")),
    "cheetah-run-backwards": (17, 6, ("cheetah", "run")),
    "cheetah-run-front": (17, 6, ("cheetah", "run")),
    "cheetah-run-back": (17, 6, ("cheetah", "run")),
    "cheetah-jump": (17, 6, ("cheetah", "run")),
    "hopper-hop-backwards": (15, 4, ("hopper", "hop")),
    "reacher-three-easy": (8, 3, ("reacher", "easy")),
    "reacher-three-hard": (8, 3, ("reacher", "hard")),
    "cup-spin": (8, 2, ("ball_in_cup", "catch")),
    "pendulum-spin": (3, 1, ("pendulum", "swingup")),
}
NAMES = list(EXPECTED)


def flat(obs) -> np.ndarray:
    return np.concatenate([np.ravel(v) for v in obs.values()])


def make(name: str, seed: int = 0):
    env = CUSTOM_TASKS[name](random=seed)
    env.reset()
    return env


def set_state(env, qpos: dict | None = None, qvel: dict | None = None) -> float:
    """Puts the physics in a crafted state (others at the model's defaults); returns the task reward."""
    physics = env.physics
    with physics.reset_context():  # resets data to qpos0 / zero velocity, then forward() on exit
        for joint, value in (qpos or {}).items():
            physics.named.data.qpos[joint] = value
        for joint, value in (qvel or {}).items():
            physics.named.data.qvel[joint] = value
    reward = env.task.get_reward(physics)
    assert 0.0 <= reward <= 1.0
    return float(reward)


# --------------------------------------------------------------------------------------------
# Interface


def test_registry_names():
    assert set(CUSTOM_TASKS) == set(EXPECTED)


@pytest.mark.parametrize("name", NAMES)
def test_interface_and_random_steps(name):
    obs_dim, act_dim, stock = EXPECTED[name]
    env = CUSTOM_TASKS[name](random=0)
    stock_env = suite.load(*stock, task_kwargs={"random": 0})
    assert list(env.observation_spec()) == list(stock_env.observation_spec())  # same keys, same order
    assert env.control_timestep() == pytest.approx(stock_env.control_timestep())
    spec = env.action_spec()
    assert spec.shape == (act_dim,)
    np.testing.assert_array_equal(spec.minimum, -1.0)
    np.testing.assert_array_equal(spec.maximum, 1.0)

    ts = env.reset()
    assert ts.first()
    assert flat(ts.observation).shape == (obs_dim,)
    rng = np.random.default_rng(0)
    for _ in range(10):
        ts = env.step(rng.uniform(-1, 1, act_dim))
        obs = flat(ts.observation)
        assert obs.shape == (obs_dim,) and np.all(np.isfinite(obs))
        assert 0.0 <= ts.reward <= 1.0
        assert ts.discount == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_time_limit_is_1000_control_steps(name):
    env = make(name)
    zero = np.zeros(env.action_spec().shape)
    steps = 0
    while not env.step(zero).last():
        steps += 1
    assert steps + 1 == 1000


@pytest.mark.parametrize("name", NAMES)
def test_seeding(name):
    first = flat(CUSTOM_TASKS[name](random=7).reset().observation)
    again = flat(CUSTOM_TASKS[name](random=7).reset().observation)
    other = flat(CUSTOM_TASKS[name](random=8).reset().observation)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    # Reseeding the task's generator (as DMCEnv.reset(seed=...) does) replays the episode start.
    env = CUSTOM_TASKS[name](random=1)
    env.task.random.seed(7)
    np.testing.assert_array_equal(flat(env.reset().observation), first)


# --------------------------------------------------------------------------------------------
# Models


@pytest.mark.parametrize("name, domain, floor, length",
                         [("walker-walk-backwards", "walker", "floor", 500.0),
                          ("cheetah-run-backwards", "cheetah", "ground", 200.0)])
def test_long_floor_is_the_only_model_change(name, domain, floor, length):
    ours = CUSTOM_TASKS[name](random=0).physics
    stock = suite.load(domain, "run", task_kwargs={"random": 0}).physics
    assert ours.named.model.geom_size[floor, 0] == length == 2 * stock.named.model.geom_size[floor, 0]
    np.testing.assert_array_equal(ours.named.model.geom_size[floor, 1:], stock.named.model.geom_size[floor, 1:])
    np.testing.assert_array_equal(ours.named.model.geom_pos[floor], stock.named.model.geom_pos[floor])
    others = [i for i in range(ours.model.ngeom) if ours.model.id2name(i, "geom") != floor]
    np.testing.assert_array_equal(ours.model.geom_size[others], stock.model.geom_size[others])
    for field in ("body_pos", "body_mass", "body_inertia", "jnt_range", "dof_damping", "actuator_gear",
                  "actuator_ctrlrange", "geom_friction"):
        np.testing.assert_array_equal(getattr(ours.model, field), getattr(stock.model, field), err_msg=field)
    assert ours.model.opt.timestep == stock.model.opt.timestep


def test_reacher_three_model():
    physics = make("reacher-three-easy").physics
    model = physics.named.model
    stock = suite.load("reacher", "easy", task_kwargs={"random": 0}).physics
    assert [physics.model.id2name(i, "joint") for i in range(physics.model.njnt)] == ["shoulder0", "shoulder1", "wrist"]
    assert list(physics.model.jnt_limited) == [0, 1, 1]
    np.testing.assert_allclose(model.jnt_range[["shoulder1", "wrist"]], np.deg2rad([[-80, 80], [-80, 80]]))
    np.testing.assert_allclose(physics.model.dof_damping, 0.01)
    np.testing.assert_allclose(physics.model.actuator_gear[:, 0], 0.05)
    np.testing.assert_allclose(physics.model.actuator_ctrlrange, [[-1, 1]] * 3)
    assert physics.model.opt.timestep == stock.model.opt.timestep == 0.02
    for geom in ("ground", "wall_x", "wall_y", "wall_neg_x", "wall_neg_y", "finger"):  # same arena
        np.testing.assert_array_equal(model.geom_size[geom], stock.named.model.geom_size[geom])
        np.testing.assert_array_equal(model.geom_pos[geom], stock.named.model.geom_pos[geom])
    # links 0.09 + 0.09 + 0.09 (fingertip along the 0.1 hand): stretched out, the finger is 0.27 away
    with physics.reset_context():
        pass
    np.testing.assert_allclose(physics.named.data.geom_xpos["finger", :2], [0.27, 0.0], atol=1e-12)
    with physics.reset_context():
        physics.named.data.qpos["shoulder0"] = np.pi / 2
        physics.named.data.qpos["wrist"] = np.pi / 2
    np.testing.assert_allclose(physics.named.data.geom_xpos["finger", :2], [-0.09, 0.18], atol=1e-12)
    assert model.geom_size["hand", 1] == pytest.approx(0.05)  # capsule half-length: 0.1 long


# --------------------------------------------------------------------------------------------
# Rewards on crafted states


@pytest.mark.parametrize("name, speed", [("walker-walk-backwards", 1.0), ("walker-run-backwards", 8.0)])
def test_walker_backwards_reward(name, speed):
    env = make(name)
    # qpos 0 is the upright walker with the torso at 1.3 (> 1.2): stand reward is 1.
    set_state(env)
    assert env.physics.torso_height() == pytest.approx(1.3) and env.physics.torso_upright() == pytest.approx(1.0)
    assert set_state(env, qvel={"rootx": -1.5 * speed}) == pytest.approx(1.0)
    assert env.physics.horizontal_velocity() == pytest.approx(-1.5 * speed)
    assert set_state(env, qvel={"rootx": -speed}) == pytest.approx(1.0)
    # linear margin speed/2, value 0.5 at the margin: halfway into it gives move = 0.75
    assert set_state(env, qvel={"rootx": -0.75 * speed}) == pytest.approx((5 * 0.75 + 1) / 6)
    assert set_state(env, qvel={"rootx": -0.5 * speed}) == pytest.approx((5 * 0.5 + 1) / 6)
    # standing still or moving forwards earns only the stand bonus
    assert set_state(env) == pytest.approx(1 / 6)
    assert set_state(env, qvel={"rootx": +1.5 * speed}) == pytest.approx(1 / 6)
    # the stock (forward) task says the opposite about the same state
    stock = suite.load("walker", "walk" if speed == 1 else "run", task_kwargs={"random": 0})
    set_state(stock, qvel={"rootx": +1.5 * speed})
    assert stock.task.get_reward(stock.physics) == pytest.approx(1.0)
    # fallen (torso near the floor, lying flat) while moving backwards: low reward
    fallen = set_state(env, qpos={"rootz": -1.1, "rooty": np.pi / 2}, qvel={"rootx": -1.5 * speed})
    assert env.physics.torso_height() < 0.3
    assert fallen < 0.25


def test_cheetah_run_backwards_reward():
    env = make("cheetah-run-backwards")
    assert set_state(env, qvel={"rootx": -10.0}) == pytest.approx(1.0)
    assert env.physics.speed() == pytest.approx(-10.0)
    assert set_state(env, qvel={"rootx": -8.0}) == pytest.approx(1.0)
    assert set_state(env, qvel={"rootx": -4.0}) == pytest.approx(0.5)  # linear over margin 8, 0 at margin
    assert set_state(env, qvel={"rootx": 0.0}) == pytest.approx(0.0)
    assert set_state(env, qvel={"rootx": +10.0}) == pytest.approx(0.0)


# Cheetah poses: lifted clear of the floor, or pitched so that one foot is high and the other low.
ALL_UP = {"rootz": 1.5}  # torso at 2.2, both feet above 1.2
BFOOT_UP = {"rootz": 0.7, "rooty": 0.9}  # torso 1.4, back foot ~1.6, front foot ~0.8
FFOOT_UP = {"rootz": 0.7, "rooty": -0.9}  # torso 1.4, front foot ~1.5, back foot ~0.7


def _z(env, body):
    return float(env.physics.named.data.xpos[body, "z"])


def test_cheetah_poses():
    env = make("cheetah-run-front")
    set_state(env, qpos=BFOOT_UP)
    assert _z(env, "torso") > 1.2 and _z(env, "bfoot") > 1.2 and _z(env, "ffoot") < 1.0
    set_state(env, qpos=FFOOT_UP)
    assert _z(env, "torso") > 1.2 and _z(env, "ffoot") > 1.2 and _z(env, "bfoot") < 1.0


@pytest.mark.parametrize("name, raised, grounded", [("cheetah-run-front", BFOOT_UP, FFOOT_UP),
                                                      ("cheetah-run-back", FFOOT_UP, BFOOT_UP)])
def test_cheetah_run_one_foot_reward(name, raised, grounded):
    env = make(name)
    # the right foot and the torso up, running forwards at >= 6: full reward
    assert set_state(env, qpos=raised, qvel={"rootx": 6.0}) == pytest.approx(1.0)
    assert set_state(env, qpos=raised, qvel={"rootx": 3.0}) == pytest.approx((5 * 0.5 + 1) / 6)
    assert set_state(env, qpos=raised) == pytest.approx(1 / 6)
    assert set_state(env, qpos=raised, qvel={"rootx": -6.0}) == pytest.approx(1 / 6)
    # the other foot up instead: less, though the torso is as high
    wrong_foot = set_state(env, qpos=grounded, qvel={"rootx": 6.0})
    assert 0.3 < wrong_foot < 0.8
    # lying on the floor in the default pose, even at full speed: almost nothing
    assert set_state(env, qvel={"rootx": 6.0}) < 0.1


def test_cheetah_jump_reward():
    env = make("cheetah-jump")
    assert set_state(env, qpos=ALL_UP) == pytest.approx(1.0)
    assert set_state(env, qpos=ALL_UP, qvel={"rootx": 0.5}) == pytest.approx(1.0)
    assert set_state(env, qpos=ALL_UP, qvel={"rootx": -0.75}) == pytest.approx((5 + 0.5) / 6)
    assert set_state(env, qpos=ALL_UP, qvel={"rootx": 2.0}) == pytest.approx(5 / 6)
    on_floor = set_state(env)
    assert on_floor < 0.3
    # standing on the front foot (back foot raised) scores for "stand front", not "stand back"
    task: CheetahJump = env.task
    set_state(env, qpos=BFOOT_UP)
    front, back = task.stand_one_foot(env.physics, "bfoot"), task.stand_one_foot(env.physics, "ffoot")
    assert front > back
    assert env.task.get_reward(env.physics) == pytest.approx((front + back) / 2)
    assert on_floor < env.task.get_reward(env.physics) < 1.0


def test_hopper_hop_backwards_reward():
    env = make("hopper-hop-backwards")
    set_state(env)
    assert 0.6 < env.physics.height() < 2  # qpos 0: upright, standing reward 1
    assert set_state(env, qvel={"rootx": -2.0}) == pytest.approx(1.0)
    assert env.physics.speed() == pytest.approx(-2.0)
    assert set_state(env, qvel={"rootx": -1.0}) == pytest.approx(1.0)
    assert set_state(env, qvel={"rootx": -0.75}) == pytest.approx(0.75)  # margin 0.5, 0.5 at the margin
    assert set_state(env, qvel={"rootx": 0.0}) == pytest.approx(0.0)
    assert set_state(env, qvel={"rootx": 2.0}) == pytest.approx(0.0)
    # lying down (torso level with the foot) while moving backwards: little reward
    assert set_state(env, qpos={"rooty": np.pi / 2}, qvel={"rootx": -2.0}) < 0.2


def test_pendulum_spin_reward():
    env = make("pendulum-spin")
    assert set_state(env, qvel={"hinge": 10.0}) == pytest.approx(1.0)
    assert set_state(env, qvel={"hinge": -10.0}) == pytest.approx(1.0)  # either direction
    assert set_state(env, qvel={"hinge": 9.0}) == pytest.approx(1.0)
    assert set_state(env, qvel={"hinge": -6.75}) == pytest.approx(0.75)  # margin 4.5, 0.5 at the margin
    assert set_state(env, qvel={"hinge": 4.5}) == pytest.approx(0.5)
    assert set_state(env, qvel={"hinge": 0.0}) == pytest.approx(0.0)
    # balancing upright (the swing-up goal) is worth nothing here
    assert set_state(env, qpos={"hinge": np.pi}) == pytest.approx(0.0)


def test_cup_spin_reward():
    env = make("cup-spin")
    physics = env.physics
    # ball resting in the cup (target site at the cup's z - 0.05, ball body at z 0.2): 0 at any speed
    assert set_state(env, qpos={"ball_z": 0.35}) == 0.0
    assert physics.in_target() == 1.0
    assert set_state(env, qpos={"ball_z": 0.35}, qvel={"ball_x": 8.0, "ball_z": 8.0}) == 0.0
    # ball far below the cup (distance 0.95 >= 0.5) and fast (|v| >= 6): full reward
    assert set_state(env, qpos={"ball_z": -0.6}, qvel={"ball_x": 6.0}) == pytest.approx(1.0)
    assert np.linalg.norm(physics.ball_to_target()) == pytest.approx(0.95)
    assert set_state(env, qpos={"ball_z": -0.6}, qvel={"ball_x": -3.6, "ball_z": 4.8}) == pytest.approx(1.0)  # |v| = 6
    # far but still: only the distance term, 1/3
    assert set_state(env, qpos={"ball_z": -0.6}) == pytest.approx(1 / 3)
    # fast, 0.375 away (halfway into the 0.25 margin: 0.75) and out of the cup
    reward = set_state(env, qpos={"ball_x": 0.375, "ball_z": 0.35}, qvel={"ball_z": -6.0})
    assert physics.in_target() == 0.0
    assert reward == pytest.approx((0.75 + 2) / 3)
    # 4.5 speed (halfway into the margin 3: 0.75), far away
    assert set_state(env, qpos={"ball_z": -0.6}, qvel={"ball_x": 4.5}) == pytest.approx((1 + 2 * 0.75) / 3)


def test_cup_spin_starts_mostly_in_the_cup():
    env = CUSTOM_TASKS["cup-spin"](random=0)
    starts = []
    for _ in range(100):
        env.reset()
        assert env.physics.data.ncon == 0
        starts.append(env.physics.in_target())
    assert 0.8 <= np.mean(starts) < 1.0


def _put_target(env, xy) -> float:
    physics = env.physics
    physics.named.model.geom_pos["target", ["x", "y"]] = xy
    physics.forward()
    return float(env.task.get_reward(physics))


@pytest.mark.parametrize("name, radius", [("reacher-three-easy", 0.05), ("reacher-three-hard", 0.015)])
def test_reacher_three_reward(name, radius):
    env = make(name, seed=3)
    physics = env.physics
    assert physics.named.model.geom_size["target", 0] == radius
    set_state(env, qpos={"shoulder0": 0.3, "shoulder1": -0.5, "wrist": 1.0})
    finger = physics.named.data.geom_xpos["finger", :2].copy()
    obs = env.task.get_observation(physics)
    np.testing.assert_allclose(obs["position"], [0.3, -0.5, 1.0])
    # finger on the target: 1; on the far side of the arena: 0
    assert _put_target(env, finger) == 1.0
    np.testing.assert_allclose(env.task.get_observation(physics)["to_target"], [0, 0], atol=1e-12)
    assert _put_target(env, -finger) == 0.0
    np.testing.assert_allclose(env.task.get_observation(physics)["to_target"], -2 * finger)
    # 0.04 away: inside the easy radius (0.05 + finger 0.01), outside the hard one (0.015 + 0.01)
    near = _put_target(env, finger + [0.04, 0.0])
    assert near == (1.0 if radius == 0.05 else 0.0)
    assert _put_target(env, finger + [0.0, 0.02]) == 1.0  # inside both


def test_reacher_three_targets_like_stock():
    env = CUSTOM_TASKS["reacher-three-easy"](random=0)
    for _ in range(20):
        env.reset()
        xy = env.physics.named.model.geom_pos["target", :2]
        assert 0.05 <= np.linalg.norm(xy) <= 0.20
        q = env.physics.named.data.qpos
        assert abs(q["shoulder1"]) <= np.deg2rad(80) and abs(q["wrist"]) <= np.deg2rad(80)

