"""The training loop on a tiny regression model: resume, metrics, warm-up, NaN stop."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

from m3dt.seeding import set_seed
from m3dt.checkpoint import load_checkpoint
from m3dt.config import LoopConfig, OptimConfig
from m3dt.runtime import use_bf16
from m3dt.train.loop import train, warmup_lambda


class ToySource:
    """Two 'tasks' of random regression batches, drawn from its own numpy RNG."""

    def __init__(self, seed: int = 0, poison_at: int | None = None):
        self.rng = np.random.default_rng(seed)
        self.poison_at = poison_at

    def next(self, step):
        task = ["a", "b"][step % 2]
        x = torch.as_tensor(self.rng.normal(size=(8, 4)), dtype=torch.float32)
        y = x.sum(1, keepdim=True) * (1 if task == "a" else -1)
        if step == self.poison_at:
            y = y * float("nan")
        return task, (x, y)

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]


def toy_model():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))


def mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def run(tmp, steps, seed=0, process_seed=None, meta=None, **kw):
    set_seed(seed if process_seed is None else process_seed)
    model = toy_model()
    cfg = LoopConfig(steps=steps, seed=seed, log_every=1, checkpoint_every=kw.pop("checkpoint_every", 5),
                     optim=OptimConfig(lr=1e-2, warmup_steps=3), **kw)
    result = train(model, model.parameters(), ToySource(seed), mse, cfg, tmp, meta=meta)
    return model, result


def test_resume_reproduces_uninterrupted_run(tmp_path):
    ref, _ = run(tmp_path / "ref", steps=12)
    # a run that crashes at step 8, after its step-5 checkpoint and 7 logged steps ...
    set_seed(0)
    model = toy_model()
    cfg = LoopConfig(steps=12, log_every=1, checkpoint_every=5, optim=OptimConfig(lr=1e-2, warmup_steps=3))
    with pytest.raises(FloatingPointError):
        train(model, model.parameters(), ToySource(0, poison_at=8), mse, cfg, tmp_path / "cut")
    assert len(list(csv.DictReader(open(tmp_path / "cut" / "metrics.csv")))) == 7
    # ... restarted from scratch in a new process state, resumes at step 5
    resumed, res = run(tmp_path / "cut", steps=12, process_seed=123)
    assert res.resumed_from == 5
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    rows = list(csv.DictReader(open(tmp_path / "cut" / "metrics.csv")))
    ref_rows = list(csv.DictReader(open(tmp_path / "ref" / "metrics.csv")))
    assert [r["step"] for r in rows] == [str(i) for i in range(1, 13)]
    assert [r["train/loss"] for r in rows] == [r["train/loss"] for r in ref_rows]


def test_checkpoint_contents_and_kept_steps(tmp_path):
    model, res = run(tmp_path, steps=6, keep_steps=(2, 4))
    assert (tmp_path / "checkpoints" / "step_2.pt").exists() and (tmp_path / "checkpoints" / "step_4.pt").exists()
    ck = load_checkpoint(res.final_checkpoint)
    assert ck["step"] == 6 and set(ck) >= {"model", "optimizer", "scheduler", "rng", "batches", "loop_config", "meta"}
    assert ck["loop_config"]["optim"]["lr"] == 1e-2


def test_warmup_is_linear_then_constant():
    f = warmup_lambda(4)
    assert [f(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_lambda(0)(0) == 1.0


def test_nan_loss_stops_with_step_and_task(tmp_path):
    set_seed(0)
    model = toy_model()
    with pytest.raises(FloatingPointError, match=r"step 3 on task 'b'"):
        train(model, model.parameters(), ToySource(0, poison_at=3), mse, LoopConfig(steps=5), tmp_path)


def test_only_trainable_parameters_change(tmp_path):
    set_seed(0)
    model = toy_model()
    frozen = model[0].weight.detach().clone()
    train(model, model[3].parameters(), ToySource(0), mse, LoopConfig(steps=3, log_every=1), tmp_path)
    torch.testing.assert_close(model[0].weight.detach(), frozen, rtol=0, atol=0)


def test_bad_config_is_rejected():
    with pytest.raises(AssertionError, match="steps"):
        LoopConfig(steps=0)
    with pytest.raises(AssertionError, match="keep_steps"):
        LoopConfig(steps=5, keep_steps=(9,))
    with pytest.raises(AssertionError, match="bf16"):
        LoopConfig(steps=5, bf16="yes")


def test_bf16_setting_and_autocast_in_training(tmp_path):
    cpu = torch.device("cpu")
    assert use_bf16(True, cpu) and not use_bf16(False, cpu)
    assert use_bf16("auto", cpu) == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    seen = []

    def recording_mse(model, batch):
        x, y = batch
        out = model(x)
        seen.append(out.dtype)
        return ((out.float() - y) ** 2).mean()

    for bf16, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        seen.clear()
        set_seed(0)
        model = toy_model()
        cfg = LoopConfig(steps=3, bf16=bf16, optim=OptimConfig(lr=1e-2, warmup_steps=1))
        train(model, model.parameters(), ToySource(0), recording_mse, cfg, tmp_path / str(bf16))
        assert set(seen) == {dtype}
        assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32


def crash(tmp, steps=12, at=8, meta=None):
    """A run that dies at step `at` (after its step-5 checkpoint), as a killed job would."""
    set_seed(0)
    model = toy_model()
    cfg = LoopConfig(steps=steps, log_every=1, checkpoint_every=5, optim=OptimConfig(lr=1e-2, warmup_steps=3))
    with pytest.raises(FloatingPointError):
        train(model, model.parameters(), ToySource(0, poison_at=at), mse, cfg, tmp, meta=meta)


def test_changed_run_does_not_resume_a_stale_checkpoint(tmp_path, caplog):
    """last.pt is resumed only by the same run: other settings or data (meta) start at step 0."""
    crash(tmp_path, meta={"data": 1})
    assert run(tmp_path, steps=6, meta={"data": 1})[1].resumed_from == 0  # steps changed
    crash(tmp_path, meta={"data": 1})
    assert run(tmp_path, steps=12, meta={"data": 2})[1].resumed_from == 0  # data changed
    assert "different run" in caplog.text
    crash(tmp_path, meta={"data": 1})
    assert run(tmp_path, steps=12, meta={"data": 1})[1].resumed_from == 5  # the same run resumes


def test_finished_run_is_retrained_when_rerun(tmp_path):
    """A forced rerun (same settings; Snakemake deleted final.pt) trains from step 0."""
    ref, res = run(tmp_path, steps=6)
    assert res.resumed_from == 0 and not (tmp_path / "checkpoints" / "last.pt").exists()
    res.final_checkpoint.unlink()
    again, res2 = run(tmp_path, steps=6)
    assert res2.resumed_from == 0 and res2.final_checkpoint.exists()
    for a, b in zip(ref.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_code_change_does_not_resume(tmp_path, monkeypatch):
    import m3dt.train.loop as loop

    assert len(loop.code_fingerprint()) == 64
    crash(tmp_path)
    monkeypatch.setattr(loop, "code_fingerprint", lambda: "edited")  # as if a .py file of m3dt changed
    assert run(tmp_path, steps=12)[1].resumed_from == 0


def test_corrupt_last_checkpoint_is_removed_and_training_restarts(tmp_path, caplog):
    crash(tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # a truncated copy
    ref, _ = run(tmp_path / "ref", steps=12)
    model, res = run(tmp_path, steps=12)
    assert res.resumed_from == 0 and f"checkpoint {last} could not be read" in caplog.text
    for a, b in zip(ref.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
