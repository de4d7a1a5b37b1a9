"""Prompt-DT, MTDT, the MoE layer and M3DT: shapes, masks, parameter counts, routing modes."""

from __future__ import annotations

import pytest
import torch

from m3dt.config import OptimConfig
from m3dt.models import (
    M3DT,
    MTDT,
    PAPER_PARAMS,
    WIDTH_PRESETS,
    ExpertBank,
    MoE,
    MoEConfig,
    NoisyTopKRouter,
    PromptDT,
    PromptDTConfig,
    Segment,
    masked_action_loss,
    optim_groups,
)
from m3dt.train.loop import build_optimizer

TINY = PromptDTConfig(width=32, n_layer=2, n_head=4)


B, K, KP = 3, 20, 5


def segment(b: int, t: int, pad: int = 0, seed: int = 0) -> Segment:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[:, :pad] = 0
    return Segment(
        torch.randn(b, t, 39, generator=g),
        torch.rand(b, t, 8, generator=g) * 2 - 1,
        torch.randn(b, t, 1, generator=g),
        torch.randint(0, 1000, (b, t), generator=g),
        mask,
    )


def model(cls=PromptDT, cfg=TINY, seed=0):
    torch.manual_seed(seed)
    return cls(cfg).eval()


def m3dt(n_experts=4, router="dense", seed=0, **kw):
    torch.manual_seed(seed)
    return M3DT(TINY, MoEConfig(n_experts=n_experts, router=router, **kw)).eval()


# ------------------------------------------------------------------------- backbone


def test_shapes_and_prompt_broadcast():
    m, x, p = model(), segment(B, K), segment(B, KP, seed=1)
    assert m(x, prompt=p).shape == (B, K, 8)
    assert m(x).shape == (B, K, 8)  # a prompt-capable model also runs without prompt
    one = Segment(*(z[:1] for z in p))  # one prompt for the whole batch
    full = Segment(*(z[:1].expand(B, *z.shape[1:]) for z in p))
    torch.testing.assert_close(m(x, prompt=one), m(x, prompt=full))
    out = m(x, prompt=p)
    assert out.abs().max() <= 1  # tanh head
    with pytest.raises(AssertionError):
        m(x._replace(states=x.states[..., :10]))
    assert m.get_action(*(z[:, :7] for z in x[:4]), prompt=p).shape == (B, 8)


def test_get_action_pads_short_histories():
    m, x, p = model(), segment(B, K, seed=2), segment(B, KP, seed=1)
    t = 7
    short = [z[:, :t] for z in x[:4]]
    pad = torch.nn.functional.pad
    padded = Segment(
        pad(short[0], (0, 0, K - t, 0)),
        pad(short[1], (0, 0, K - t, 0)),
        pad(short[2], (0, 0, K - t, 0)),
        pad(short[3], (K - t, 0)),
        segment(B, K, pad=K - t).attn_mask,
    )
    torch.testing.assert_close(m.get_action(*short, prompt=p), m(padded, prompt=p)[:, -1])


@pytest.mark.parametrize("residual", ["normed", "stream"])
def test_causal(residual):
    from dataclasses import replace

    m, x, p = model(cfg=replace(TINY, ffn_residual=residual)), segment(B, K), segment(B, KP, seed=1)
    t = 9
    y = segment(B, K, seed=5)
    # change a_t and everything after s_t: predictions up to t (made from s_0..s_t) stay
    changed = Segment(
        torch.cat([x.states[:, : t + 1], y.states[:, t + 1 :]], 1),
        torch.cat([x.actions[:, :t], y.actions[:, t:]], 1),
        torch.cat([x.rtg[:, : t + 1], y.rtg[:, t + 1 :]], 1),
        torch.cat([x.timesteps[:, : t + 1], y.timesteps[:, t + 1 :]], 1),
        x.attn_mask,
    )
    a, b = m(x, prompt=p), m(changed, prompt=p)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
    assert (a[:, t + 1 :] - b[:, t + 1 :]).abs().max() > 1e-4
    # the action of step t is predicted from the state of step t, which it sees
    moved = changed._replace(states=torch.cat([x.states[:, :t], y.states[:, t:]], 1))
    assert (m(moved, prompt=p)[:, t] - a[:, t]).abs().max() > 1e-4


def test_left_padding_is_invisible():
    m = model()
    x, p = segment(B, K, pad=6), segment(B, KP, pad=2, seed=1)
    junk, pjunk = segment(B, K, seed=7), segment(B, KP, seed=8)
    x2 = Segment(*(torch.cat([j[:, :6], z[:, 6:]], 1) for j, z in zip(junk[:4], x[:4])), x.attn_mask)
    p2 = Segment(*(torch.cat([j[:, :2], z[:, 2:]], 1) for j, z in zip(pjunk[:4], p[:4])), p.attn_mask)
    a, b = m(x, prompt=p), m(x2, prompt=p2)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    torch.testing.assert_close(a[:, 6:], b[:, 6:], rtol=0, atol=1e-6)
    # and the real prompt does matter
    assert (m(x, prompt=pjunk)[:, 6:] - a[:, 6:]).abs().max() > 1e-4


def test_loss_masks_action_dims_and_padding():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 4, 8, generator=g)
    target = torch.rand(2, 4, 8, generator=g)
    attn = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    amask = torch.zeros(2, 8)
    amask[0, :4] = 1
    amask[1, :6] = 1
    loss = masked_action_loss(pred, target, amask, attn)
    sel = [(pred[b, t, :d] - target[b, t, :d]) for b, d in ((0, 4), (1, 6)) for t in range(4) if attn[b, t]]
    expected = torch.cat(sel).square().mean()
    torch.testing.assert_close(loss, expected)
    noisy = target.clone()
    noisy[0, :, 4:] = 99.0  # masked action dims
    noisy[:, 0] = -10.0  # padded timesteps
    noisy[1, 1] = -10.0
    torch.testing.assert_close(masked_action_loss(pred, noisy, amask, attn), loss)
    torch.testing.assert_close(masked_action_loss(pred, noisy, amask[:, None].expand(2, 4, 8), attn), loss)
    assert PromptDT.loss(pred, noisy, amask, attn) == loss


# ------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("preset", list(WIDTH_PRESETS))
def test_num_params_match_paper(preset):
    cfg = PromptDTConfig.from_preset(preset)
    with torch.device("meta"):
        m = PromptDT(cfg)
    paper = PAPER_PARAMS[cfg.width]
    assert abs(m.num_params() / paper - 1) < 0.02
    assert abs(m.num_params(authors_convention=True) / paper - 1) < 0.005


def test_m3dt_num_params_match_paper():
    # paper: 47.87M (8 experts), 98.37M (24), 174.12M (48) on the 5M backbone
    for E, paper in ((8, 47.87e6), (24, 98.37e6), (48, 174.12e6)):
        with torch.device("meta"):
            m = M3DT(PromptDTConfig(), MoEConfig(n_experts=E))
        assert abs(m.num_params(authors_convention=True) / paper - 1) < 1e-3


def test_mtdt_has_no_prompt():
    m = model(MTDT, cfg=TINY)
    assert not m.cfg.use_prompt
    assert not any("prompt" in n for n, _ in m.named_parameters())
    pdt = model()
    n_prompt = sum(p.numel() for n, p in pdt.named_parameters() if n.startswith("prompt_"))
    assert m.num_params() == pdt.num_params() - n_prompt
    x = segment(B, K)
    assert m(x).shape == (B, K, 8)
    with pytest.raises(AssertionError):
        m(x, prompt=segment(B, KP))


# ------------------------------------------------------------------------- experts


def bank(E=4, C=16, H=64, seed=0):
    torch.manual_seed(seed)
    eb = ExpertBank(E, C, H, dropout=0.1)
    with torch.no_grad():
        eb.fc_bias.normal_()
        eb.proj_bias.normal_()
    return eb.eval()


def test_expert_bank_modes_agree():
    eb = bank()
    x = torch.randn(3, 7, 16, requires_grad=True)
    gates = torch.softmax(torch.randn(3, 7, 4), -1)
    outs, grads = [], []
    for mode in ("loop", "bmm", "einsum"):
        eb.zero_grad()
        x.grad = None
        y = eb.mix(x, gates, mode)
        y.square().sum().backward()
        outs.append(y)
        grads.append([x.grad.clone()] + [p.grad.clone() for p in eb.parameters()])
    for o, gs in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(o, outs[0], rtol=1e-5, atol=1e-6)
        for a, b in zip(gs, grads[0]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    xe = torch.randn(4, 2, 5, 16)
    ref = eb.grouped(xe, "loop")
    for mode in ("bmm", "einsum"):
        torch.testing.assert_close(eb.grouped(xe, mode), ref, rtol=1e-5, atol=1e-6)
    idx = torch.tensor([2, 0, 2])
    ref = eb.per_sample(x, idx, "loop")
    torch.testing.assert_close(eb.per_sample(x, idx, "bmm"), ref, rtol=1e-5, atol=1e-6)


def test_expert_matches_mlp_and_single_equals_one_hot():
    from m3dt.models import MLP

    eb = bank()
    mlp = MLP(PromptDTConfig(width=16, n_head=4)).eval()
    eb.copy_from_mlp(1, mlp)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(eb.single(x, 1), mlp(x))
    for e in range(4):
        one_hot = torch.zeros(2, 5, 4)
        one_hot[..., e] = 1
        for mode in ("loop", "bmm", "einsum"):
            torch.testing.assert_close(eb.mix(x, one_hot, mode), eb.single(x, e), rtol=1e-5, atol=1e-6)
    idx = torch.tensor([3, 1])
    torch.testing.assert_close(eb.per_sample(x, idx), torch.stack([eb.single(x[0], 3), eb.single(x[1], 1)]))


def test_grouped_equals_each_expert_alone():
    eb = bank()
    xe = torch.randn(4, 3, 6, 16)
    for mode in ("loop", "bmm", "einsum"):
        y = eb.grouped(xe, mode)
        for e in range(4):
            torch.testing.assert_close(y[e], eb.single(xe[e], e), rtol=1e-5, atol=1e-6)


def test_topk_router_keeps_k_gates():
    torch.manual_seed(0)
    r = NoisyTopKRouter(16, 8, top_k=3, eval_noise=False)
    y = torch.randn(4, 10, 16)
    for train in (True, False):
        r.train(train)
        g = r(y)
        assert g.shape == (4, 10, 8)
        assert ((g > 0).sum(-1) == 3).all()
        torch.testing.assert_close(g.sum(-1), torch.ones(4, 10))
    r.eval()
    torch.testing.assert_close(r(y), r(y))  # eval_noise=False: no noise at evaluation
    moe = MoE(MoEConfig(n_experts=8, router="topk", top_k=3), 16).eval()
    g = moe.router(y)
    for mode in ("loop", "bmm"):
        torch.testing.assert_close(moe.experts.mix(y, g, mode), moe.experts.mix(y, g, "einsum"), rtol=1e-5, atol=1e-6)


def test_topk_router_adds_noise_at_evaluation_by_default():
    """The authors' noisy top-k router draws its noise in eval mode too."""
    assert MoEConfig(router="topk").topk_eval_noise
    moe = MoE(MoEConfig(n_experts=8, router="topk", top_k=3), 16).eval()
    torch.nn.init.normal_(moe.router.noise_linear.weight, std=1.0)  # noise of the size of the logits
    y = torch.randn(4, 10, 16)
    torch.manual_seed(1)
    a = moe.router(y)
    b = moe.router(y)
    assert not torch.equal(a, b)  # fresh noise per call
    torch.manual_seed(1)
    torch.testing.assert_close(moe.router(y), a, rtol=0, atol=0)  # and seeded
    quiet = MoE(MoEConfig(n_experts=8, router="topk", top_k=3, topk_eval_noise=False), 16).eval()
    torch.testing.assert_close(quiet.router(y), quiet.router(y), rtol=0, atol=0)


def test_dense_router_shape():
    moe = MoE(MoEConfig(n_experts=5), 32)
    widths = [m.out_features for m in moe.router.net if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 128, 128, 64, 5]
    g = moe.router(torch.randn(2, 3, 32))
    torch.testing.assert_close(g.sum(-1), torch.ones(2, 3))


# ------------------------------------------------------------------------- M3DT


@pytest.mark.parametrize("residual", ["normed", "stream"])
def test_m3dt_none_is_the_backbone(residual):
    from dataclasses import replace

    bb = model(cfg=replace(TINY, ffn_residual=residual))
    m = M3DT.from_backbone(bb, MoEConfig(n_experts=3), ffn_residual=None).eval()  # keep the backbone's form
    x, p = segment(B, K), segment(B, KP, seed=1)
    assert torch.equal(m(x, prompt=p, routing="none"), bb(x, prompt=p))
    assert not torch.equal(m(x, prompt=p), bb(x, prompt=p))
    # a copy, not shared storage
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(m.backbone.parameters(), bb.parameters()))
    m2 = M3DT.from_backbone(bb, MoEConfig(n_experts=3), ffn_residual="normed")
    assert m2.cfg.ffn_residual == "normed"


# ------------------------------------------------------------------------- block forms (authors)


def _gpt2_attention(attn, x: torch.Tensor) -> torch.Tensor:
    """Causal multi-head attention written out from GPT-2 (no padding, eval mode)."""
    B_, T, C = x.shape
    nh = attn.n_head
    q, k, v = (x @ attn.c_attn.weight.T + attn.c_attn.bias).split(C, dim=2)
    q, k, v = (z.view(B_, T, nh, C // nh).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
    w = q @ k.transpose(-1, -2) / (C // nh) ** 0.5  # (B, nh, T, T)
    w = w.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")).softmax(-1)
    y = (w @ v).transpose(1, 2).reshape(B_, T, C)
    return y @ attn.c_proj.weight.T + attn.c_proj.bias


def _ffn(mlp, y: torch.Tensor) -> torch.Tensor:
    return torch.relu(y @ mlp.c_fc.weight.T + mlp.c_fc.bias) @ mlp.c_proj.weight.T + mlp.c_proj.bias


def _allowed(T: int) -> torch.Tensor:
    return torch.ones(T, T, dtype=torch.bool).tril()[None, None]  # (1, 1, T, T)


def test_dense_backbone_block_is_the_gpt2_block():
    """Default config (stage 1 and every dense model): out = h + FFN(LN2 h), as GPT-2."""
    assert PromptDTConfig().ffn_residual == "stream"
    torch.manual_seed(0)
    bb = PromptDT(PromptDTConfig(width=32, n_layer=2, n_head=4)).double().eval()
    blk = bb.blocks[0]
    for p in blk.parameters():  # non-trivial LayerNorms and biases
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    h = x + _gpt2_attention(blk.attn, blk.ln_1(x))
    ref = h + _ffn(blk.mlp, blk.ln_2(h))
    torch.testing.assert_close(blk(x, _allowed(7)), ref, rtol=1e-12, atol=1e-12)
    # and it is not the M3DT form
    assert not torch.allclose(blk(x, _allowed(7)), blk.ln_2(h) + _ffn(blk.mlp, blk.ln_2(h)))


def test_m3dt_on_a_gpt2_backbone_gets_the_authors_m3dt_block():
    """M3DT.from_backbone switches the stream backbone to y = LN2 h; out = y + FFN(y) + MoE(y)."""
    torch.manual_seed(0)
    bb = PromptDT(PromptDTConfig(width=32, n_layer=2, n_head=4)).double().eval()
    m = M3DT.from_backbone(bb, MoEConfig(n_experts=3)).double().eval()
    assert bb.cfg.ffn_residual == "stream" and m.cfg.ffn_residual == "normed"
    blk, moe = m.backbone.blocks[1], m.moes[1]
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    h = x + _gpt2_attention(blk.attn, blk.ln_1(x))
    y = blk.ln_2(h)
    ref = y + _ffn(blk.mlp, y) + moe(y, "router", None)
    torch.testing.assert_close(blk(x, _allowed(7), lambda z: moe(z, "router", None)), ref, rtol=1e-12, atol=1e-12)


def test_m3dt_single_equals_one_hot_router():
    m = m3dt()
    x, p = segment(B, K), segment(B, KP, seed=1)
    single = m(x, prompt=p, routing="single", expert=2)
    for moe in m.moes:  # a router that always picks expert 2
        last = moe.router.net[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(-1e4)
            last.bias[2] = 0
    torch.testing.assert_close(m(x, prompt=p), single)
    m.set_routing("single", 2)
    torch.testing.assert_close(m(x, prompt=p), single)
    per_sample = m(x, prompt=p, routing="single", expert=torch.tensor([2, 0, 2]))
    torch.testing.assert_close(per_sample[[0, 2]], single[[0, 2]])
    torch.testing.assert_close(per_sample[1], m(x, prompt=p, routing="single", expert=0)[1])


def test_m3dt_grouped_equals_single_per_group():
    m = m3dt(n_experts=3)
    x, p = segment(6, K), segment(6, KP, seed=1)
    out = m(x, prompt=p, routing="grouped")
    for e in range(3):
        sl = slice(2 * e, 2 * e + 2)
        ref = m(Segment(*(z[sl] for z in x)), prompt=Segment(*(z[sl] for z in p)), routing="single", expert=e)
        torch.testing.assert_close(out[sl], ref, rtol=1e-5, atol=1e-6)


def test_grouped_training_gradients_equal_separate_training():
    m = m3dt(n_experts=3)
    m.set_trainable(backbone=False, experts=True, routers=False)
    x, p = segment(6, K), segment(6, KP, seed=1)
    target, amask = torch.rand(6, K, 8) * 2 - 1, torch.ones(6, 8)
    loss = m.grouped_loss(m(x, prompt=p, routing="grouped"), target, amask, x.attn_mask, 3)
    loss.backward()
    grouped = [q.grad.clone() for q in m.expert_parameters()]
    for e in range(3):
        m.zero_grad()
        sl = slice(2 * e, 2 * e + 2)
        pred = m(Segment(*(z[sl] for z in x)), prompt=Segment(*(z[sl] for z in p)), routing="single", expert=e)
        m.loss(pred, target[sl], amask[sl], x.attn_mask[sl]).backward()
        for g, q in zip(grouped, m.expert_parameters()):
            torch.testing.assert_close(g[e], q.grad[e], rtol=1e-4, atol=1e-7)
    m.zero_grad()
    loss = m.grouped_loss(m(x, prompt=p, routing="grouped"), target, amask, x.attn_mask, 3)
    loss.backward()
    norms = m.clip_grad_norm_per_expert(1e-3)
    assert norms.shape == (3,)
    after = torch.stack([sum(q.grad[e].square().sum() for q in m.expert_parameters()).sqrt() for e in range(3)])
    torch.testing.assert_close(after, torch.minimum(norms, torch.full((3,), 1e-3)), rtol=1e-3, atol=1e-8)


def _grads(m, routing="router", expert=None):
    m.train()
    m.zero_grad()
    x, p = segment(B, K), segment(B, KP, seed=1)
    m.loss(
        m(x, prompt=p, routing=routing, expert=expert), torch.zeros(B, K, 8), torch.ones(B, 8), x.attn_mask
    ).backward()


def test_gradients_flow_only_into_trainable_group():
    m = m3dt()
    groups = {"backbone": m.backbone_parameters(), "experts": m.expert_parameters(), "routers": m.router_parameters()}
    assert sum(len(v) for v in groups.values()) == len(list(m.parameters()))
    for stage, routing, expert in (("backbone", "none", None), ("experts", "single", 1), ("routers", "router", None)):
        trainable = m.set_trainable(**{k: k == stage for k in groups})
        assert {id(q) for q in trainable} == {id(q) for q in groups[stage]}
        _grads(m, routing, expert)
        for name, params in groups.items():
            if name == stage:
                assert all(q.grad is not None for q in params)
                assert sum(q.grad.abs().sum() for q in params) > 0
            else:
                assert all(q.grad is None for q in params), (stage, name)
    # stage 2: only expert 1's slices get gradient
    m.set_trainable(backbone=False, experts=True, routers=False)
    _grads(m, "single", 1)
    for q in m.expert_parameters():
        assert q.grad[1].abs().sum() > 0 and q.grad[[0, 2, 3]].abs().sum() == 0
    # with a router every expert gets gradient, and mask_expert_grads keeps only some
    _grads(m, "router")
    assert all((q.grad.flatten(1).abs().sum(1) > 0).all() for q in m.expert_parameters())
    m.mask_expert_grads([0, 3])
    for q in m.expert_parameters():
        assert q.grad[[1, 2]].abs().sum() == 0 and (q.grad[[0, 3]].flatten(1).abs().sum(1) > 0).all()


def test_expert_state_roundtrip():
    src, dst = m3dt(n_experts=1, seed=1), m3dt(n_experts=4, seed=2)
    dst.load_expert_state(2, src.expert_state(0))
    x = segment(B, K)
    for a, b in zip(src.expert_parameters(), dst.expert_parameters()):
        assert torch.equal(a[0], b[2])
    # with equal backbones the transplanted expert computes the same function
    dst.backbone.load_state_dict(src.backbone.state_dict())
    torch.testing.assert_close(dst(x, routing="single", expert=2), src(x, routing="single", expert=0))


def test_topk_m3dt_runs_in_all_modes():
    outs = []
    for mode in ("loop", "bmm", "einsum"):
        m = m3dt(n_experts=6, router="topk", top_k=2, mode=mode)
        torch.manual_seed(7)  # the same gate noise (drawn at evaluation too) in every mode
        outs.append(m(segment(B, K), prompt=segment(B, KP, seed=1)))
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-5, atol=1e-6)


def test_conflict_groups_and_optimizer_groups():
    from m3dt.analysis.conflict import parameter_groups

    m = m3dt()
    groups = parameter_groups(m)
    assert list(groups) == ["embeddings", "attention", "mlp", "experts", "routers", "other"]
    ids = [id(q) for ps in groups.values() for q in ps]
    assert sorted(ids) == sorted(id(q) for q in m.parameters())
    assert {id(q) for q in groups["experts"]} == {id(q) for q in m.expert_parameters()}
    decay, no_decay = optim_groups(m, 1e-4)
    assert not any(q.ndim < 2 for q in decay["params"])
    no_decay_ids = {id(q) for q in no_decay["params"]}
    assert id(m.moes[0].experts.fc_bias) in no_decay_ids and id(m.backbone.input_embed.timestep.weight) in no_decay_ids
    m.set_trainable(backbone=False, experts=False, routers=True)
    opt = build_optimizer(m, [q for q in m.parameters() if q.requires_grad], OptimConfig())
    assert {id(q) for g in opt.param_groups for q in g["params"]} == {id(q) for q in m.router_parameters()}


@pytest.mark.parametrize("cls", ["prompt_dt", "m3dt"])
def test_fits_a_fixed_batch(cls):
    torch.manual_seed(0)
    m = PromptDT(TINY) if cls == "prompt_dt" else M3DT(TINY, MoEConfig(n_experts=2))
    if cls == "m3dt":
        m.set_trainable(backbone=False, experts=True, routers=True)
    m.train()
    x, p = segment(4, K, pad=3), segment(4, KP, seed=1)
    target, amask = torch.rand(4, K, 8) * 1.6 - 0.8, torch.ones(4, 8)
    opt = build_optimizer(m, [q for q in m.parameters() if q.requires_grad], OptimConfig(lr=3e-3, warmup_steps=0))
    losses = []
    for _ in range(30):
        loss = m.loss(m(x, prompt=p), target, amask, x.attn_mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
