"""Evaluation: batched rollouts, model inputs, early termination, workers, scores, CLI."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from m3dt import tasks
from m3dt.evaluate import (EPISODE_COLUMNS, PER_TASK_COLUMNS, SUMMARY_COLUMNS, evaluate, evaluate_task, per_task,
                           summarize, write_scores)
from m3dt.models import PromptDT, PromptDTConfig
from m3dt.checkpoint import PROMPT_KEYS, model_spec
from m3dt.policy import Policy, load_policy
from m3dt.checkpoint import save_checkpoint


TINY = PromptDTConfig(width=32, n_layer=1, n_head=2, context_len=4, prompt_len=2)
TASKS = ["cheetah-vel-0", "cheetah-vel-1", "ant-dir-0", "cartpole-balance", "reach-v2"]


def synthetic_stats(names, seed=0, identity=False):
    rng = np.random.default_rng(seed)
    out = {}
    for n in names:
        d = tasks.get(n).obs_dim
        if identity:
            out[n] = (np.zeros(d, np.float32), np.ones(d, np.float32))
        else:
            out[n] = (rng.normal(0, 0.1, d).astype(np.float32), rng.uniform(0.5, 2.0, d).astype(np.float32))
    return out


def synthetic_prompts(names, n_episodes=2, length=2, seed=0):
    rng = np.random.default_rng(seed)
    return {n: [{"states": rng.normal(size=(1, length, 39)).astype(np.float32),
                 "actions": rng.uniform(-1, 1, (1, length, 8)).astype(np.float32),
                 "rtg": rng.uniform(0, 2, (1, length, 1)).astype(np.float32),
                 "timesteps": np.arange(190, 190 + length, dtype=np.int64)[None],
                 "mask": np.ones((1, length), np.float32)} for _ in range(n_episodes)] for n in names}


PROMPT_RETURNS = [3.0, 7.0]  # prompt episode 1 has the higher return: "best"


def tiny_policy(names=TASKS, seed=0):
    torch.manual_seed(seed)
    model = PromptDT(TINY).eval()
    return Policy(model, model_spec("prompt_dt", TINY), list(names), synthetic_stats(names, seed),
                  synthetic_prompts(names, seed=seed), prompt_returns={n: PROMPT_RETURNS for n in names})


class StubModel(nn.Module):
    """A 'model' whose action is a fixed function of its inputs; records every call."""

    def __init__(self, fn, K=4):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.cfg = SimpleNamespace(context_len=K, max_ep_len=1000)
        self.fn, self.calls = fn, []

    def get_action(self, states, actions, rtg, timesteps, prompt=None):
        self.calls.append(tuple(z.clone() for z in (states, actions, rtg, timesteps))
                          + ((tuple(p.clone() for p in prompt)) if prompt is not None else None,))
        return self.fn(states, actions, rtg, timesteps)


def stub_policy(fn, names, K=4, identity=False, prompts=True):
    return Policy(StubModel(fn, K), {"kind": "prompt_dt"}, list(names), synthetic_stats(names, identity=identity),
                  synthetic_prompts(names) if prompts else {}, prompt_returns={n: PROMPT_RETURNS for n in names})


def constant(value):
    return lambda s, a, r, t: torch.full((s.shape[0], 8), float(value))


def pseudo_random(s, a, r, t):
    """Uniform-looking actions in [-1, 1] that depend only on the row's last state."""
    return torch.sin(1e3 * (s[:, -1, :, None] * torch.arange(1, 9)).sum(1))


def hand_rollout(name, seed, actions_fn, max_steps=None):
    """Step a fresh padded env by hand: (return, length, success, terminated)."""
    spec = tasks.get(name)
    env = tasks.make_env(name)
    obs, _ = env.reset(seed=seed)
    ret, success, terminated = 0.0, False, False
    for t in range(max_steps or spec.episode_length):
        obs, r, term, trunc, info = env.step(actions_fn(obs))
        ret += r
        success |= info["success"]
        if term or trunc:
            terminated = term
            assert info["episode"]["return"] == pytest.approx(ret)
            break
    return ret, t + 1, success, terminated


# ----------------------------------------------------------------------------- rollouts


@pytest.mark.parametrize("name,action", [("cheetah-vel-0", 0.3), ("ant-dir-0", -0.5), ("cartpole-balance", 0.2)])
def test_scripted_rollout_scores_match_hand_stepping(name, action):
    spec = tasks.get(name)
    df = evaluate_task(stub_policy(constant(action), [name]), name, episodes=2, seed=7)
    assert list(df.columns) == list(EPISODE_COLUMNS) and len(df) == 2
    assert df["episode"].tolist() == [0, 1] and df["env_seed"].tolist() == [7, 8] and (df["seed"] == 7).all()
    for _, row in df.iterrows():
        ret, length, _, terminated = hand_rollout(name, int(row["env_seed"]), lambda o: np.full(8, np.float32(action)))
        assert row["return"] == pytest.approx(ret, abs=1e-9)
        assert row["length"] == length and row["terminated"] == terminated
        assert np.isnan(row["success"])
        assert row["normalized_score"] == pytest.approx(spec.normalized_score(ret))


@pytest.mark.filterwarnings("ignore:Constant\\(s\\) may be too high")
def test_metaworld_success_and_score():
    """A scripted reach policy behind the model interface: success tracked, score 100."""
    from metaworld.policies import SawyerReachV3Policy

    expert = SawyerReachV3Policy()

    def act(s, a, r, t):  # identity stats: the state is the raw observation
        return torch.as_tensor(np.stack([np.pad(expert.get_action(x.numpy().astype(np.float64)), (0, 4))
                                         for x in s[:, -1]]), dtype=torch.float32)

    df = evaluate_task(stub_policy(act, ["reach-v2"], identity=True), "reach-v2", episodes=1, seed=0)
    ret, length, success, _ = hand_rollout("reach-v2", 0,
                                           lambda o: np.pad(expert.get_action(o.astype(np.float64)), (0, 4)))
    row = df.iloc[0]
    assert success and row["success"] == 1.0 and row["normalized_score"] == 100.0
    assert row["length"] == length == 500 and row["return"] == pytest.approx(ret, rel=1e-6)


def test_metaworld_episode_i_runs_on_goal_i():
    """As the authors: the 10 evaluation episodes of a Meta-World task use MT1 train tasks 0..9."""
    import pickle

    import metaworld

    pol = stub_policy(constant(0.0), ["reach-v2"], identity=True)
    df = evaluate_task(pol, "reach-v2", seed=123, max_steps=1)  # default: the registry's 10 episodes
    assert len(df) == 10
    first_states = pol.model.calls[0][0][:, -1, 36:39].numpy()  # (10, 3) goal dims seen at t = 0
    mt1 = metaworld.MT1("reach-v3", seed=0)
    want = np.stack([pickle.loads(mt1.train_tasks[i].data)["rand_vec"][-3:] for i in range(10)])
    np.testing.assert_allclose(first_states, want, atol=1e-6)


@pytest.mark.parametrize("history", ["full", "masked"])
def test_model_inputs_follow_training_conventions(history):
    """States normalised, past actions (all 8 predicted dims, as the authors, or the real dims
    only), RTG from target minus rewards / scale, timesteps, only the last K steps fed, the
    higher-return prompt expanded to the batch."""
    name, B, steps, K = "cartpole-balance", 2, 7, 4  # obs 5, action 1, RTG 1000 / 200
    spec = tasks.get(name)
    pol = stub_policy(lambda s, a, r, t: torch.tanh(s[:, -1, :8] * 3 + 0.1), [name], K=K)
    kw = {} if history == "full" else {"action_history": "masked"}  # full is the default
    evaluate_task(pol, name, episodes=B, seed=3, max_steps=steps, **kw)
    calls = pol.model.calls
    assert len(calls) == steps
    mean, std = pol.stats[name]
    prompt = pol.prompt(name, 1)  # the higher-return prompt episode
    assert not torch.equal(prompt[0], pol.prompt(name, 0)[0])
    for i in range(B):  # replay env i by hand with the actions the model gave it
        env = tasks.make_env(name)
        obs, _ = env.reset(seed=3 + i)
        states, acts, rtgs = [], [], [spec.rtg_target / spec.rtg_scale]
        for t, (s, a, r, ts, p) in enumerate(calls):
            x = np.zeros(39, np.float32)
            x[:5] = (obs[:5] - mean) / std
            states.append(x)
            lo = max(0, t + 1 - K)
            assert s.shape == (B, t + 1 - lo, 39) and a.shape == (B, t + 1 - lo, 8) and r.shape == (B, t + 1 - lo, 1)
            np.testing.assert_allclose(s[i].numpy(), np.stack(states[lo:]), rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(r[i, :, 0].numpy(), rtgs[lo:], rtol=1e-6)
            assert ts[i].tolist() == list(range(lo, t + 1))
            hist = np.zeros((t + 1 - lo, 8), np.float32)  # zeros at the current step
            if t > lo:
                hist[:-1] = np.stack(acts[lo:t])
            if history == "masked":
                hist[:, 1:] = 0.0  # zeros beyond action_dim
            np.testing.assert_allclose(a[i].numpy(), hist, rtol=1e-6, atol=1e-7)
            assert history == "masked" or t == 0 or np.abs(a[i, :-1, 1:].numpy()).sum() > 0
            for q, ref in zip(p, prompt):
                assert q.shape[0] == B and torch.equal(q[i], ref[0])
            action = torch.tanh(s[i, -1, :8] * 3 + 0.1).numpy()  # (8,): the model's full prediction
            acts.append(action)
            obs, reward, *_ = env.step(np.pad(action[:1], (0, 7)))  # the env gets the real dim only
            rtgs.append(rtgs[-1] - reward / spec.rtg_scale)


def test_batched_equals_one_by_one():
    """Equal to fp32 rounding. Short episodes: on CPUs whose GEMM kernels depend on the batch
    size (AVX-512 machines) a row's action differs from its solo action in the last bits, and
    the locomotion simulators amplify that over a long episode (ant-dir: 16 of 23 return
    points apart after 50 steps, 5e-5 after 20; 2026-12-06)."""
    pol = tiny_policy()
    for name in ("cheetah-vel-0", "ant-dir-0"):
        batch = evaluate_task(pol, name, episodes=3, seed=11, max_steps=20)
        single = pd.concat([evaluate_task(pol, name, episodes=1, seed=11 + i, max_steps=20) for i in range(3)],
                           ignore_index=True)
        assert batch["env_seed"].tolist() == single["env_seed"].tolist() == [11, 12, 13]
        np.testing.assert_allclose(batch["return"], single["return"], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(batch["normalized_score"], single["normalized_score"], rtol=1e-4, atol=1e-3)
        assert batch["length"].tolist() == single["length"].tolist()


def test_real_early_termination_drops_out():
    """ant-dir under pseudo-random actions falls at different steps; each row equals its solo run."""
    pol = stub_policy(pseudo_random, ["ant-dir-0"])
    batch = evaluate_task(pol, "ant-dir-0", episodes=4, seed=0)
    sizes = [c[0].shape[0] for c in pol.model.calls]
    assert batch["terminated"].any() and batch["length"].nunique() > 1
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < 4 and len(sizes) == batch["length"].max()
    for i in range(4):
        solo = evaluate_task(stub_policy(pseudo_random, ["ant-dir-0"]), "ant-dir-0", episodes=1, seed=i)
        assert solo["length"][0] == batch["length"][i]
        assert solo["return"][0] == pytest.approx(batch["return"][i], rel=1e-9)
        assert solo["terminated"][0] == batch["terminated"][i]


class FakeEnv:
    """Ends after `end` steps (terminated or truncated); checks it gets its own row's action."""

    def __init__(self, ident, end, terminate=True):
        self.ident, self.end, self.terminate = ident, end, terminate
        self.t, self.done, self.rewards = 0, False, []

    def obs(self):
        o = np.zeros(39, np.float32)
        o[0], o[1] = self.ident, self.t
        return o

    def reset(self, seed=None):
        self.t, self.done = 0, False
        return self.obs(), {}

    def step(self, action):
        assert not self.done, f"env {self.ident} stepped after its episode ended"
        assert action.shape == (8,) and action[0] == pytest.approx(self.ident / 10)
        self.t += 1
        r = self.ident + 0.5 * self.t
        self.rewards.append(r)
        self.done = self.t >= self.end
        return self.obs(), r, self.done and self.terminate, self.done and not self.terminate, {"success": False}


def test_fake_envs_end_early_and_leave_the_batch():
    name = "ant-dir-0"
    ends = [3, 7, 5, 10]
    envs = [FakeEnv(i, e, terminate=(i != 3)) for i, e in enumerate(ends)]
    # identity stats: state dim 0 is the env id; action dim 0 = id / 10
    pol = stub_policy(lambda s, a, r, t: (s[:, -1, :8] * 0 + s[:, -1, :1]) / 10, [name], identity=True)
    df = evaluate_task(pol, name, episodes=4, seed=0, envs=envs)
    sizes = [c[0].shape[0] for c in pol.model.calls]
    assert sizes == [4, 4, 4, 3, 3, 2, 2, 1, 1, 1]
    assert df["length"].tolist() == ends
    assert df["terminated"].tolist() == [True, True, True, False]
    np.testing.assert_allclose(df["return"], [sum(e.rewards) for e in envs])
    spec = tasks.get(name)
    assert df["normalized_score"].tolist() == [spec.normalized_score(sum(e.rewards)) for e in envs]


def test_workers_and_determinism(tmp_path):
    pol = tiny_policy()
    ck = tmp_path / "policy.pt"
    save_checkpoint(ck, {"model": pol.model.state_dict(), "meta": policy_meta(pol)})
    names = ["ant-dir-0", "cheetah-vel-0", "cheetah-vel-1"]
    one = evaluate(pol, names, episodes=2, seed=4)
    assert one["task"].tolist() == [n for n in names for _ in range(2)]
    pd.testing.assert_frame_equal(one, evaluate(pol, names, episodes=2, seed=4))  # deterministic
    pd.testing.assert_frame_equal(one, evaluate(str(ck), names, episodes=2, seed=4, workers=2))
    with pytest.raises(FileNotFoundError, match="does not exist"):  # a worker's load error reaches the caller
        evaluate(str(tmp_path / "missing.pt"), names, workers=2)
    other = evaluate(pol, names, episodes=2, seed=5)
    assert not np.allclose(one["return"], other["return"])
    assert other.loc[0, "return"] == pytest.approx(one.loc[1, "return"])  # env seeds are seed + i


# ----------------------------------------------------------------------------- scores


def episode_frame():
    rows = []
    for task, rets, succ in [("reach-v2", [10.0, 20.0], [1, 0]), ("push-v2", [1.0, 3.0], [1, 1]),
                             ("cartpole-balance", [300.0, 500.0], None), ("cheetah-vel-0", [-44.0], None)]:
        spec = tasks.get(task)
        for i, r in enumerate(rets):
            s = bool(succ[i]) if succ else None
            rows.append({"task": task, "suite": spec.suite, "seed": 0, "episode": i, "env_seed": i, "return": r,
                         "length": spec.episode_length, "success": float(s) if succ else np.nan,
                         "normalized_score": spec.normalized_score(r, s), "terminated": False})
    return pd.DataFrame(rows, columns=list(EPISODE_COLUMNS))


def test_summary_math(tmp_path):
    df = episode_frame()
    pt = per_task(df)
    assert list(pt.columns) == list(PER_TASK_COLUMNS)
    assert pt["normalized_score"].tolist() == pytest.approx([50.0, 100.0, 40.0, 80.0])
    assert pt["episodes"].tolist() == [2, 2, 2, 1]
    assert pt["success_rate"].iloc[:2].tolist() == [0.5, 1.0] and pt["success_rate"].iloc[2:].isna().all()
    s = summarize(df).set_index("scope")
    assert list(summarize(df).columns) == list(SUMMARY_COLUMNS)
    assert list(s.index) == ["all", "metaworld", "dmc", "cheetah_vel"]
    assert s.loc["all", "score_mean"] == pytest.approx(67.5)
    assert s.loc["all", "score_std"] == pytest.approx(np.std([50, 100, 40, 80]))
    assert s.loc["all", "n_tasks"] == 4 and s.loc["all", "n_episodes"] == 7
    assert s.loc["all", "success_rate"] == pytest.approx(0.75) == s.loc["metaworld", "success_rate"]
    assert s.loc["metaworld", "score_mean"] == pytest.approx(75.0) and s.loc["dmc", "score_mean"] == 40.0
    assert np.isnan(s.loc["dmc", "success_rate"]) and s.loc["cheetah_vel", "score_std"] == 0.0
    pd.testing.assert_frame_equal(summarize(pt), summarize(df))
    # two seeds of one task: the task's score is the mean over all its episodes
    two = pd.concat([df, df.assign(seed=1, normalized_score=df["normalized_score"] + 10)], ignore_index=True)
    assert summarize(two).set_index("scope").loc["all", "score_mean"] == pytest.approx(72.5)
    paths = write_scores(df, tmp_path / "t.csv", tmp_path / "s.csv", tmp_path / "e.csv")
    assert set(paths) == {"per_task", "summary", "episodes"}
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "s.csv"), summarize(df))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), pt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv", "s.csv", "t.csv"]


# ----------------------------------------------------------------------------- CLI


def policy_meta(pol):
    return {"model_spec": pol.spec, "tasks": pol.tasks,
            "stats": {t: tuple(np.asarray(a).tolist() for a in pol.stats[t]) for t in pol.tasks},
            "prompts": pol.prompts, "prompt_returns": pol.prompt_returns}


def test_best_prompt_episode_is_the_higher_return(caplog):
    pol = tiny_policy(["cheetah-vel-0"])
    assert pol.prompt_episode("cheetah-vel-0") == 1 and pol.prompt_episode("cheetah-vel-0", 0) == 0
    for a, b in zip(pol.prompt("cheetah-vel-0"), pol.prompt("cheetah-vel-0", 1)):
        assert torch.equal(a, b)
    pol.prompt_returns["cheetah-vel-0"] = [9.0, 2.0]
    assert pol.prompt_episode("cheetah-vel-0") == 0
    pol.prompt_returns["cheetah-vel-0"] = [4.0, 4.0]  # ties: the last, as argsort(returns)[-1]
    assert pol.prompt_episode("cheetah-vel-0") == 1
    pol.prompt_returns.clear()  # an older checkpoint: episode 0, with a warning
    assert pol.prompt_episode("cheetah-vel-0") == 0 and "no prompt returns" in caplog.text
    with pytest.raises(ValueError, match="prompt episode"):
        pol.prompt("cheetah-vel-0", "worst")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    pol = tiny_policy(["cheetah-vel-0", "ant-dir-0"])
    path = tmp_path_factory.mktemp("ck") / "policy.pt"
    save_checkpoint(path, {"model": pol.model.state_dict(), "meta": policy_meta(pol)})
    return path


def test_cli_end_to_end(checkpoint, tmp_path, capsys):
    from m3dt.__main__ import main

    out, summ, eps = tmp_path / "scores.csv", tmp_path / "summary.csv", tmp_path / "episodes.csv"
    rc = main(["evaluate", "--checkpoint", str(checkpoint), "--episodes", "2", "--eval-seed", "1",
               "--prompt-episode", "1", "--out", str(out), "--summary", str(summ), "--episodes-csv", str(eps)])
    assert rc == 0
    pol = load_policy(checkpoint)
    assert set(PROMPT_KEYS) == set(pol.prompts["ant-dir-0"][1])
    ref = evaluate(pol, ["cheetah-vel-0", "ant-dir-0"], episodes=2, seed=1, prompt_episode=1)
    got = pd.read_csv(eps)
    assert got["task"].tolist() == ref["task"].tolist()
    np.testing.assert_allclose(got["return"], ref["return"], rtol=1e-9)
    np.testing.assert_allclose(pd.read_csv(out)["normalized_score"], per_task(ref)["normalized_score"], rtol=1e-9)
    summary = pd.read_csv(summ)
    assert summary["scope"].tolist() == ["all", "ant_dir", "cheetah_vel"]
    # the model's parameter count as the paper counts them (with the authors' unused heads)
    assert (summary["n_params"] == pol.model.num_params(authors_convention=True)).all()
    assert pol.model.num_params(authors_convention=True) > sum(p.numel() for p in pol.model.parameters())
    assert "score_mean" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "garbage", "unknown_task", "untrained_task", "prompt_episode",
                                  "bad_benchmark"])
def test_cli_bad_input(case, checkpoint, tmp_path, capsys):
    from m3dt.__main__ import main

    ck = str(checkpoint)
    extra = ["--tasks", "cheetah-vel-0"]
    if case == "missing":
        ck = str(tmp_path / "nope.pt")
    elif case == "garbage":
        (tmp_path / "bad.pt").write_text("not a checkpoint")
        ck = str(tmp_path / "bad.pt")
    elif case == "unknown_task":
        extra = ["--tasks", "cheetah-vel-0", "no-such-task"]
    elif case == "untrained_task":
        extra = ["--tasks", "reach-v2"]
    elif case == "prompt_episode":
        extra += ["--prompt-episode", "5"]
    else:
        extra = ["--benchmark", "7"]
    out = tmp_path / "o" / "scores.csv"
    rc = main(["evaluate", "--checkpoint", ck, *extra, "--out", str(out), "--summary", str(tmp_path / "o" / "s.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("m3dt evaluate: error:"), err
    assert not out.exists() and not (tmp_path / "o").exists()


def test_bf16_autocast_runs_the_model_in_bf16_deterministically(tmp_path):
    pol = tiny_policy()
    seen: list[torch.dtype] = []
    hook = pol.model.predict_action.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        fp32 = evaluate_task(pol, "cheetah-vel-0", episodes=2, seed=3, max_steps=30)
        assert set(seen) == {torch.float32}
        seen.clear()
        bf16 = evaluate_task(pol, "cheetah-vel-0", episodes=2, seed=3, max_steps=30, bf16=True)
        assert set(seen) == {torch.bfloat16}
    finally:
        hook.remove()
    pd.testing.assert_frame_equal(bf16, evaluate_task(pol, "cheetah-vel-0", episodes=2, seed=3, max_steps=30,
                                                      bf16=True))  # deterministic
    assert not np.array_equal(fp32["return"], bf16["return"])  # rounding changes the actions ...
    np.testing.assert_allclose(fp32["return"], bf16["return"], rtol=0.05)  # ... a little
    # the workers path passes the flag on
    ck = tmp_path / "policy.pt"
    save_checkpoint(ck, {"model": pol.model.state_dict(), "meta": policy_meta(pol)})
    both = evaluate(str(ck), ["cheetah-vel-0", "cheetah-vel-1"], episodes=2, seed=3, workers=2, max_steps=30,
                    bf16=True)
    pd.testing.assert_frame_equal(bf16, both[both["task"] == "cheetah-vel-0"].reset_index(drop=True))


@pytest.mark.parametrize("field, value, match", [("episodes", 0, "episodes must be >= 1"),
                                                 ("max_steps", 0, "max_steps must be >= 1"),
                                                 ("workers", 0, "workers must be >= 1"),
                                                 ("prompt_episode", "worst", "prompt_episode"),
                                                 ("action_history", "partial", "action_history"),
                                                 ("bf16", "on", "bf16")])
def test_eval_config_names_the_bad_field(field, value, match):
    from m3dt.evaluate import EvalConfig

    with pytest.raises(ValueError, match=match):
        EvalConfig(**{field: value})


def test_evaluate_to_files_is_the_cli_job(checkpoint, tmp_path):
    from m3dt.__main__ import main
    from m3dt.evaluate import BadEvalInput, EvalConfig, evaluate_to_files

    cfg = EvalConfig(episodes=2, seed=1, max_steps=20)
    df = evaluate_to_files(checkpoint, tmp_path / "s.csv", tmp_path / "m.csv", cfg)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--episodes", "2", "--eval-seed", "1", "--max-steps",
                 "20", "--out", str(tmp_path / "cli_s.csv"), "--summary", str(tmp_path / "cli_m.csv")]) == 0
    assert (tmp_path / "s.csv").read_text() == (tmp_path / "cli_s.csv").read_text()
    assert (tmp_path / "m.csv").read_text() == (tmp_path / "cli_m.csv").read_text()
    scores = pd.read_csv(tmp_path / "s.csv")  # one row per task
    assert scores["task"].tolist() == ["cheetah-vel-0", "ant-dir-0"] and scores["episodes"].tolist() == [2, 2]
    assert len(df) == 4  # the per-episode frame
    with pytest.raises(BadEvalInput, match="reach"):
        evaluate_to_files(checkpoint, tmp_path / "x.csv", cfg=cfg, tasks=["reach-v2"])
    assert not (tmp_path / "x.csv").exists()
