"""`data.experts.library`: SAC experts trained with sbx (JAX) export the same actor-only
policy.pt as SB3 ones, are reproducible from the seed, resume, and say what trained them."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from m3dt.dataclass_io import ConfigError
from m3dt.experts.config import ExpertConfig
from m3dt.experts.kinds import load_expert
from m3dt.experts.sac import train_expert
from m3dt.experts.sac_library import sac_class
from m3dt.experts.sac_policy import load_actor

TASK = "cartpole-balance"
TINY = dict(source="train", learning_starts=50, batch_size=32, net_arch=(32, 32), eval_episodes=1, eval_max_steps=20,
            log_every=100, checkpoint_every=100, curve_every=100, curve_episodes=1, device="cpu",
            sac_steps_overrides={TASK: 250}, threshold_overrides={TASK: 0.0})


def test_library_setting_is_checked(monkeypatch):
    with pytest.raises(ConfigError, match="data.experts.library"):
        ExpertConfig(library="tf-agents")
    monkeypatch.setitem(sys.modules, "sbx", None)  # as if sbx-rl were not installed
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[sbx\]\""):
        sac_class("sbx")


@pytest.mark.parametrize("library", ["sb3", "sbx"])
def test_same_seed_same_expert(tmp_path, library):
    """Two trainings with one seed write byte-identical policy.pt files (the sha256 in
    expert.json is a reproducible fingerprint), for either library."""
    if library == "sbx":
        pytest.importorskip("sbx")
    cfg = ExpertConfig(library=library, **TINY)
    shas = [train_expert(TASK, cfg, tmp_path / str(i))["policy_sha256"] for i in range(2)]
    assert shas[0] == shas[1]


def test_sbx_expert_exports_the_actor_collection_uses(tmp_path):
    sbx = pytest.importorskip("sbx")
    meta = train_expert(TASK, ExpertConfig(library="sbx", **TINY), tmp_path / TASK)
    assert meta["algorithm"].startswith("SAC (sbx-rl") and meta["train_key"]["library"] == "sbx"
    assert meta["n_updates"] == 250 - 50 and meta["versions"]["sbx-rl"] and meta["versions"]["jax"]
    model = sbx.SAC.load(tmp_path / TASK / "model.zip")
    actor = load_actor(tmp_path / TASK / "policy.pt", expected_sha256=meta["policy_sha256"])
    obs = np.random.default_rng(0).normal(size=(32, 5)).astype(np.float32)
    ours = np.stack([actor.predict(o)[0] for o in obs])
    theirs = np.stack([model.predict(o, deterministic=True)[0] for o in obs])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)  # XLA and torch round matmuls differently
    assert np.abs(ours).max() > 0
    expert = load_expert(TASK, tmp_path)  # what collection acts with: the exported actor
    a = expert.act(obs[0], np.random.default_rng(0))
    np.testing.assert_array_equal(a, actor.predict(obs[0])[0])


def test_sbx_training_resumes_from_its_checkpoint(tmp_path):
    """A killed sbx training restarts from its last checkpoint (sbx's own loader), not from 0."""
    pytest.importorskip("sbx")
    cfg = ExpertConfig(library="sbx", keep_checkpoint=True, **dict(TINY, sac_steps_overrides={TASK: 200}))
    train_expert(TASK, cfg, tmp_path / TASK)
    meta_path = tmp_path / TASK / "expert.json"
    meta = json.loads(meta_path.read_text())
    meta["status"] = "training"  # as if killed after the last checkpoint
    meta_path.write_text(json.dumps(meta))
    longer = ExpertConfig(library="sbx", **dict(TINY, sac_steps_overrides={TASK: 300}))
    import logging

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    log = logging.getLogger("test_sbx_resume")
    log.addHandler(Keep())
    log.setLevel(logging.INFO)
    meta = train_expert(TASK, longer, tmp_path / TASK, log=log)
    assert meta["train_steps"] == 300
    assert any("resuming from checkpoint at step 100/300" in r for r in records), records


def test_sbx_runs_xla_in_one_thread_like_torch_threads():
    """One sbx training job per core: with torch_threads 1, XLA is single-threaded too."""
    import os
    import subprocess

    pytest.importorskip("sbx")
    code = ("import os; from m3dt.experts.sac_library import sac_class, XLA_ONE_THREAD; sac_class('sbx', 1); "
            "import jax; print(XLA_ONE_THREAD in os.environ['XLA_FLAGS'], 'jax' in dir())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True"]
