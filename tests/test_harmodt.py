"""HarmoDT: mask sparsity, masked forward, frozen masked-out coordinates, the mask-update
rule on conflicting tasks, checkpoints through the real loop and `checkpoint.build_model`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from m3dt.data.sampler import MultiTaskSampler, SamplerConfig
from m3dt.data.store import TaskData
from m3dt.models.harmodt import (HARMO_PRESETS, PAPER_HARMO_PARAMS, HarmoConfig, HarmoDT, erk_densities, pack_bits,
                                 pack_bits_torch, unpack_bits, unpack_bits_torch)
from m3dt.models.prompt_dt import PromptDT, PromptDTConfig, Segment
from m3dt.checkpoint import build_model, policy_meta
from m3dt.policy import load_policy
from m3dt.seeding import set_seed
from m3dt.train.harmodt import change_count, harmodt_parts, select_swaps
from m3dt.checkpoint import load_checkpoint
from m3dt.config import LoopConfig, OptimConfig
from m3dt.train.loop import train

TASKS = ["cheetah-vel-0", "cheetah-vel-1"]  # same dims (obs 20, act 6)
DT = PromptDTConfig(width=32, n_layer=1, n_head=2, context_len=4, prompt_len=2, dropout=0.0)


def opposite_tasks_sampler(tasks=TASKS, batch_size=8, seed=0) -> MultiTaskSampler:
    """Tasks with the same states and opposite actions (a = +-tanh(first obs dims))."""
    rng = np.random.default_rng(0)
    obs = [rng.normal(size=(T, 20)).astype(np.float32) for T in (12, 10, 14, 9)]
    data = {}
    for k, t in enumerate(tasks):
        sign = 1.0 if k % 2 == 0 else -1.0
        eps = [{"observations": o, "actions": (sign * np.tanh(o[:, :6])).astype(np.float32),
                "rewards": np.ones(len(o), np.float32), "terminals": np.arange(len(o)) == len(o) - 1} for o in obs]
        data[t] = TaskData.from_episodes(t, eps, n_prompt=2)
    return MultiTaskSampler(data, SamplerConfig(K=4, prompt_len=2, batch_size=batch_size, seed=seed))


def loop_cfg(steps, wd=0.0, lr=1e-2, **kw):
    return LoopConfig(steps=steps, device="cpu", log_every=1000, checkpoint_every=kw.pop("checkpoint_every", 1000),
                      optim=OptimConfig(lr=lr, weight_decay=wd, warmup_steps=1), **kw)


def test_pack_bits_roundtrip():
    bits = torch.rand(3, 37) < 0.5
    packed = pack_bits(bits)
    assert packed.shape == (3, 5) and packed.dtype == torch.uint8
    assert torch.equal(unpack_bits(packed, 37), bits)
    assert torch.equal(pack_bits_torch(bits), packed)  # the GPU path
    assert torch.equal(unpack_bits_torch(packed, 37), bits)


def test_masks_have_the_configured_sparsity():
    torch.manual_seed(0)
    cfg = HarmoConfig(sparsity=0.3)
    model = HarmoDT(DT, cfg, ["a", "b", "c"])
    dens = model.mask_densities()
    # ERK: 1-D parameters (biases, LayerNorms) are dense; density ~ (sum(shape) / prod(shape))
    assert dens["blocks.0.ln_1.weight"] == 1.0 and dens["blocks.0.attn.c_attn.bias"] == 1.0
    assert dens["blocks.0.mlp.c_fc.weight"] < dens["blocks.0.attn.c_proj.weight"] <= 1.0
    for i in range(3):  # each coordinate active with its parameter's density (Bernoulli, as the authors)
        for mp, m in zip(model.masked, model.task_masks(i)):
            sd = math.sqrt(dens[mp.name] * (1 - dens[mp.name]) / mp.numel)
            assert m.shape == mp.shape and abs(m.float().mean() - dens[mp.name]) <= 5 * sd + 1e-9, mp.name
        assert model.density(i) == pytest.approx(0.7, abs=5e-3)  # 1 - sparsity over all masked coordinates
    assert not torch.equal(model.task_mask_flat(0), model.task_mask_flat(1))  # one random mask per task
    same = HarmoDT(DT, HarmoConfig(same_init=True, init="uniform"), ["a", "b"])
    assert torch.equal(same.task_mask_flat(0), same.task_mask_flat(1))
    assert same.density(0) == pytest.approx(0.8, abs=5e-3)
    # the shapes of ERK: exact solution keeps the requested total
    shapes = {"w": (64, 64), "v": (256, 8), "b": (64,)}
    d = erk_densities(shapes, 0.5)
    kept = sum(d[k] * math.prod(s) for k, s in shapes.items())
    assert d["b"] == 1.0 and kept == pytest.approx(0.5 * (4096 + 2048 + 64))


def test_forward_is_promptdt_with_masked_weights():
    torch.manual_seed(0)
    model = HarmoDT(DT, HarmoConfig(), ["a", "b"]).eval()
    plain = PromptDT(DT).eval()
    b = opposite_tasks_sampler().sample_task(TASKS[1])
    for i, t in enumerate(["a", "b"]):
        state = {}
        for mp, m in zip(model.masked, model.task_masks(i)):
            w = model.dt.get_parameter(mp.name).detach()
            state[mp.name] = w * m if mp.in_forward else w  # embeddings and head: unmasked in the forward pass
        plain.load_state_dict(state)
        model.set_task(t)
        seg = Segment(*b.inputs)
        torch.testing.assert_close(model(seg, prompt=b.prompt), plain(seg, prompt=b.prompt))
    assert not any(mp.in_forward for mp in model.masked if "embed" in mp.name or "predict" in mp.name)
    assert all(mp.in_forward for mp in model.masked if mp.name.startswith(("blocks.", "ln_f")))


def test_set_task_unknown_raises_keyerror_naming_it():
    model = HarmoDT(DT, HarmoConfig(), ["a", "b"])
    with pytest.raises(KeyError, match="no-such-task"):
        model.set_task("no-such-task")
    with pytest.raises(RuntimeError, match="set_task"):
        HarmoDT(DT, HarmoConfig(), ["a"])(Segment(*opposite_tasks_sampler().sample_task(TASKS[0]).inputs))


@pytest.mark.parametrize("freeze,wd", [(True, 0.1), (False, 0.0)])
def test_masked_out_coordinates_get_no_gradient_and_no_update(tmp_path, freeze, wd):
    set_seed(0)
    sampler = opposite_tasks_sampler(tasks=TASKS[:1])
    model, trainable, loss_fn, hooks = harmodt_parts(DT, HarmoConfig(freeze_masked_out=freeze), sampler.tasks,
                                                     total_steps=1)
    # the gradient itself: zero on masked-out coordinates of forward-masked parameters
    loss_fn(model, sampler.sample_task(TASKS[0])).backward()
    for mp, m in zip(model.masked, model.task_masks(0)):
        g = model.dt.get_parameter(mp.name).grad
        if mp.in_forward:
            assert not g[~m].any(), mp.name
    model.zero_grad(set_to_none=True)
    before = {n: p.detach().clone() for n, p in model.dt.named_parameters()}
    # one step of the real loop (freeze: even with weight decay; else: the first AdamW step has zero momentum)
    train(model, trainable, sampler, loss_fn, loop_cfg(1, wd=wd), tmp_path, hooks=hooks)
    changed = 0
    for mp, m in zip(model.masked, model.task_masks(0)):
        p = model.dt.get_parameter(mp.name).detach()
        if freeze or mp.in_forward:
            assert torch.equal(p[~m], before[mp.name][~m]), mp.name
        changed += int((p[m] != before[mp.name][m]).sum())
    assert changed > 0


def test_selection_rule_on_hand_made_gradients():
    mask = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    g_mean = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    g = torch.tensor([-1.0, 0.5, 2.0, -0.1, 0.0, 3.0, -2.0, 1.0])  # this task's gradient
    prune, revive = select_swaps(mask, g, g_mean, k=2, gamma=10.0, select="fisher")
    # prune score 10 g + g^2 on active: [-9, 5.25, 24, -0.99] -> 0, 3; revive: highest g on inactive -> 5, 7
    assert sorted(prune.tolist()) == [0, 3] and sorted(revive.tolist()) == [5, 7]
    prune, revive = select_swaps(mask, g, g_mean, k=10, gamma=10.0)  # capped at 4 active / 4 inactive
    assert prune.numel() == 4 and revive.numel() == 4


def test_swap_count_schedule():
    c = HarmoConfig()  # authors: eta_min 0, eta_max 100, "bump"
    assert change_count(1, 1000, c) == 0 and change_count(501, 1000, c) == 100 and change_count(1000, 1000, c) == 0
    assert change_count(101, 1000, c) == int(50 * (1 - math.cos(2 * math.pi * 0.1)))
    cos = HarmoConfig(anneal="cosine", change_min=10, change_max=50)
    assert change_count(1, 1000, cos) == 50 and change_count(1001, 1000, cos) == 10


def conflict_run(tmp_path, steps=4, **harmo):
    set_seed(0)
    sampler = opposite_tasks_sampler()
    cfg = HarmoConfig(same_init=True, init="uniform", mask_interval=steps, anneal="cosine", change_min=40,
                      change_max=40, **harmo)
    dt = PromptDTConfig(**{**DT.__dict__, "dropout": 0.1})  # scoring runs with dropout on, seeded per task
    model, trainable, loss_fn, hooks = harmodt_parts(dt, cfg, sampler.tasks, total_steps=steps)
    start = [model.task_mask_flat(i).clone() for i in range(2)]
    train(model, trainable, sampler, loss_fn, loop_cfg(steps), tmp_path, hooks=hooks)
    return model, hooks[0], start


def test_conflicting_tasks_get_different_masks(tmp_path):
    model, hook, start = conflict_run(tmp_path / "a")
    assert torch.equal(start[0], start[1])  # same initial mask ...
    end = [model.task_mask_flat(i) for i in range(2)]
    assert not torch.equal(end[0], end[1])  # ... different after one update
    assert len(hook.history) == 1 and hook.history[0]["step"] == 4 and hook.history[0]["swapped"] == 80
    for i in range(2):
        assert int(end[i].sum()) == int(start[i].sum())  # sparsity kept
        assert int((end[i] & ~start[i]).sum()) == 40 and int((start[i] & ~end[i]).sum()) == 40
    pruned = [start[i] & ~end[i] for i in range(2)]
    assert int((pruned[0] & pruned[1]).sum()) < 20  # opposite gradients: mostly different coordinates pruned
    # recomputing the scoring gradients instead of storing them gives the same masks
    model2, _, _ = conflict_run(tmp_path / "b", grad_store_gb=0.0)
    for i in range(2):
        assert torch.equal(model2.task_mask_flat(i), end[i])


def test_checkpoint_holds_masks_and_policy_rebuilds_the_model(tmp_path):
    set_seed(0)
    sampler = opposite_tasks_sampler()
    cfg = HarmoConfig(mask_interval=3, anneal="cosine", change_min=30, change_max=30)
    model, trainable, loss_fn, hooks = harmodt_parts(DT, cfg, sampler.tasks, total_steps=6,
                                                     sample_batch=sampler.sample_task)
    init = [model.task_mask_flat(i).clone() for i in range(2)]
    meta = policy_meta(model.spec(), sampler, sampler.tasks)
    res = train(model, trainable, sampler, loss_fn, loop_cfg(6), tmp_path / "run", meta=meta, hooks=hooks)
    assert len(hooks[0].history) == 2 and not torch.equal(model.task_mask_flat(0), init[0])
    ck = load_checkpoint(res.final_checkpoint)
    rebuilt = build_model(ck["meta"]["model_spec"])
    assert isinstance(rebuilt, HarmoDT) and rebuilt.tasks == sampler.tasks
    rebuilt.load_state_dict(ck["model"])
    policy = load_policy(res.final_checkpoint)
    model.eval(), rebuilt.eval()
    b = sampler.sample_task(TASKS[0])
    outs = []
    for i, t in enumerate(sampler.tasks):
        assert torch.equal(rebuilt.task_mask_flat(i), model.task_mask_flat(i))
        assert torch.equal(policy.model.task_mask_flat(i), model.task_mask_flat(i))
        for m in (model, rebuilt):
            m.set_task(t)
        policy.select_task(t)
        seg = Segment(*b.inputs)
        torch.testing.assert_close(rebuilt(seg, prompt=b.prompt), model(seg, prompt=b.prompt))
        a = policy.model.get_action(b.states, b.actions, b.rtg, b.timesteps, policy.prompt(t))
        torch.testing.assert_close(a, model.get_action(b.states, b.actions, b.rtg, b.timesteps, policy.prompt(t)))
        outs.append(a)
    assert not torch.allclose(outs[0], outs[1])  # the task's mask changes the action


def test_resume_reproduces_uninterrupted_run(tmp_path):
    def run(out, steps):
        set_seed(0)
        sampler = opposite_tasks_sampler()
        cfg = HarmoConfig(mask_interval=2, anneal="cosine", change_min=20, change_max=20)
        model, trainable, loss_fn, hooks = harmodt_parts(DT, cfg, sampler.tasks, total_steps=6,
                                                         sample_batch=sampler.sample_task)
        train(model, trainable, sampler, loss_fn, loop_cfg(steps, checkpoint_every=2), out, hooks=hooks)
        return model

    ref = run(tmp_path / "ref", 6)
    run(tmp_path / "cut", 4)  # leaves last.pt at step 4
    resumed = run(tmp_path / "cut", 6)
    for k, v in ref.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


def test_presets_match_the_paper_sizes_and_mask_memory():
    for name, preset in HARMO_PRESETS.items():
        with torch.device("meta"):
            model = HarmoDT(PromptDTConfig(**preset), HarmoConfig(), [f"t{i}" for i in range(160)], init_masks=False)
        n = model.num_params(authors_convention=True)
        assert n == pytest.approx(PAPER_HARMO_PARAMS[name], rel=0.005), name
        assert model.mask_bytes() == pytest.approx(160 * model.num_params() / 8, rel=1e-4)  # 1 bit per coordinate


def test_spec_requires_tasks_and_roundtrips():
    model = HarmoDT(DT, HarmoConfig(gamma=3.0, forward_exempt=["embed", "predict"]), ["a", "b"])
    again = build_model(model.spec())
    assert again.tasks == ["a", "b"] and again.harmo_cfg == model.harmo_cfg
    spec = model.spec()
    spec.pop("tasks")
    with pytest.raises(ValueError, match="task list"):
        build_model(spec)
    with pytest.raises(ValueError, match="total_steps"):
        harmodt_parts(DT, HarmoConfig(), ["a"])
