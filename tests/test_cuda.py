"""CUDA checks (marker `cuda`: skipped without a GPU; `pytest -m cuda` selects them).

Only torch/numpy parts of m3dt: the GPU machine has no simulators (benchmarks/gpu_check.sh).
"""

import pytest
import torch

from m3dt.models import M3DT, ExpertBank, MoEConfig, PromptDT, PromptDTConfig, Segment
from m3dt.models.inference import act, prompt_cache

pytestmark = pytest.mark.cuda
DEV = torch.device("cuda")
CFG = dict(width=64, n_layer=2, n_head=4, context_len=6, prompt_len=3)


def history(B, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(B, t, 39, generator=g), torch.randn(B, t, 8, generator=g), torch.randn(B, t, 1, generator=g),
         torch.arange(t).expand(B, -1))
    return tuple(z.to(DEV) for z in x)


@pytest.mark.parametrize("form", ["normed", "stream"])
def test_inference_forward_equals_get_action_on_cuda(form):
    torch.backends.cuda.matmul.allow_tf32 = False
    cfg = PromptDTConfig(**CFG, ffn_residual=form)
    torch.manual_seed(0)
    for m in (PromptDT(cfg), M3DT(cfg, MoEConfig(n_experts=4))):
        m = m.to(DEV).eval()
        p = tuple(z[:1, :3] for z in history(1, 3, seed=1)) + (torch.ones(1, 3, device=DEV),)
        cache = prompt_cache(m, p)
        for t in (1, 6, 9):
            x = history(5, t, seed=t)
            torch.testing.assert_close(act(m, *x, cache), m.get_action(*x, p), rtol=0, atol=1e-5)


def test_expert_modes_agree_on_cuda():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    bank = ExpertBank(6, 32, 128).to(DEV).eval()
    x = torch.randn(4, 10, 32, device=DEV)
    gates = torch.softmax(torch.randn(4, 10, 6, device=DEV), -1)
    ref = bank.mix(x, gates, "loop")
    for mode in ("bmm", "einsum", "auto"):
        torch.testing.assert_close(bank.mix(x, gates, mode), ref, rtol=1e-5, atol=1e-5)
    xs = torch.randn(6, 3, 32, device=DEV)
    torch.testing.assert_close(bank.grouped(xs, "bmm"), torch.stack([bank.single(xs[e], e) for e in range(6)]),
                               rtol=1e-5, atol=1e-5)


def test_grouped_expert_gradients_equal_separate_steps_on_cuda():
    """Stage 2 with E experts in one step gives expert e the gradient of its own group alone."""
    torch.backends.cuda.matmul.allow_tf32 = False
    cfg = PromptDTConfig(**CFG, dropout=0.0)
    torch.manual_seed(0)
    model = M3DT(cfg, MoEConfig(n_experts=3)).to(DEV)
    model.set_trainable(backbone=False, experts=True, routers=False)
    B = 2
    x = history(3 * B, 6, seed=3)
    mask = torch.ones(3 * B, 6, device=DEV)
    target = torch.rand(3 * B, 6, 8, device=DEV)
    am = torch.ones(8, device=DEV)
    M3DT.grouped_loss(model(Segment(*x, mask), routing="grouped"), target, am, mask, 3).backward()
    grouped = [p.grad.clone() for p in model.expert_parameters()]
    for e in range(3):
        model.zero_grad(set_to_none=True)
        rows = slice(e * B, (e + 1) * B)
        pred = model(Segment(*(z[rows] for z in x), mask[rows]), routing="single", expert=e)
        M3DT.loss(pred, target[rows], am, mask[rows]).backward()
        for g, p in zip(grouped, model.expert_parameters()):
            torch.testing.assert_close(g[e], p.grad[e], rtol=1e-4, atol=1e-6)


def test_bf16_stage3_step_on_cuda_trains_only_routers():
    cfg = PromptDTConfig(**CFG)
    model = M3DT(cfg, MoEConfig(n_experts=4)).to(DEV).train()
    trainable = model.set_trainable(backbone=False, experts=False, routers=True)
    x = history(8, 6, seed=4)
    mask = torch.ones(8, 6, device=DEV)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        pred = model(Segment(*x, mask))
        loss = M3DT.loss(pred, torch.zeros_like(pred), torch.ones(8, device=DEV), mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
