"""The evaluation forward (`m3dt.models.inference`) equals the straightforward `get_action`."""

import numpy as np
import pytest
import torch

from m3dt.evaluate import evaluate_task
from m3dt.models import M3DT, MTDT, MoEConfig, PromptDT, PromptDTConfig
from m3dt.models.inference import act, prompt_cache
from m3dt.checkpoint import model_spec
from m3dt.policy import Policy

CFG = dict(width=32, n_layer=3, n_head=4, context_len=5, prompt_len=3)


def models(form):
    """The models `act` serves. The top-k router's evaluation noise is off here: with it on (the
    authors' default) both paths draw fresh noise, so only the noiseless forms can be equal."""
    cfg = PromptDTConfig(**CFG, ffn_residual=form)
    torch.manual_seed(0)
    yield "prompt_dt", PromptDT(cfg)
    yield "mtdt", MTDT(cfg)
    for moe in (MoEConfig(n_experts=3), MoEConfig(n_experts=3, router="topk", top_k=2, topk_eval_noise=False)):
        m = M3DT(cfg, moe)
        for p in m.moes.parameters():  # non-trivial experts and routers
            torch.nn.init.normal_(p, std=0.2)
        yield f"m3dt-{moe.router}", m


def history(B, t, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, t, 39, generator=g), torch.randn(B, t, 8, generator=g), torch.randn(B, t, 1, generator=g),
            torch.arange(7, 7 + t).expand(B, -1))


def prompt(Bp):
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(Bp, 3, dtype=torch.long)
    mask[:, 0] = 0  # a left-padded prompt
    return (torch.randn(Bp, 3, 39, generator=g), torch.randn(Bp, 3, 8, generator=g), torch.randn(Bp, 3, 1, generator=g),
            torch.tensor([[50, 51, 52]]).expand(Bp, -1), mask)


@pytest.mark.parametrize("form", ["normed", "stream"])
def test_act_equals_get_action(form):
    """Short (padded by get_action), full and longer-than-K histories; batch-1 and batch-B prompts."""
    B = 4
    for name, m in models(form):
        m.eval()
        for Bp in (1, B):
            p = None if name == "mtdt" else prompt(Bp)
            cache = prompt_cache(m, p)
            for t in (1, 3, 5, 8):
                x = history(B, t, seed=t)
                torch.testing.assert_close(act(m, *x, cache), m.get_action(*x, p), rtol=0, atol=1e-5,
                                           msg=lambda s, n=name, t=t: f"{form} {n} t={t}: {s}")


def test_act_under_other_routings():
    m = next(m for n, m in models("normed") if n == "m3dt-dense").eval()
    p, x = prompt(1), history(3, 6, seed=0)
    for routing, expert in (("none", None), ("single", 2), ("router", None)):
        m.set_routing(routing, expert)
        torch.testing.assert_close(act(m, *x, prompt_cache(m, p)), m.get_action(*x, p), rtol=0, atol=1e-5)


def test_prompt_cache_does_not_depend_on_input_and_refuses_training_mode():
    m = PromptDT(PromptDTConfig(**CFG))
    with pytest.raises(AssertionError, match="model.eval"):
        prompt_cache(m, prompt(1))
    m.eval()
    cache = prompt_cache(m, prompt(1))
    assert len(cache.kv) == CFG["n_layer"] and cache.kv[0][0].shape == (1, 4, 9, 8)
    with pytest.raises(AssertionError, match="prompt cache batch 2"):
        act(m, *history(3, 2, 0), prompt_cache(m, prompt(2)))


def test_rollout_actions_equal_the_full_forward():
    """evaluate_task with the cached forward gives the episodes of the full forward (same
    returns and lengths, to fp32 rounding), for Prompt-DT and M3DT."""
    names = ["cartpole-balance"]
    rng = np.random.default_rng(0)
    stats = {names[0]: (np.zeros(5, np.float32), np.ones(5, np.float32))}
    prompts = {names[0]: [{"states": rng.normal(size=(1, 3, 39)).astype(np.float32),
                           "actions": rng.uniform(-1, 1, (1, 3, 8)).astype(np.float32),
                           "rtg": np.ones((1, 3, 1), np.float32), "timesteps": np.arange(3)[None],
                           "mask": np.ones((1, 3), np.float32)}]}
    cfg = PromptDTConfig(**CFG)
    for kind, m, moe in (("prompt_dt", PromptDT(cfg), None),
                         ("m3dt", M3DT(cfg, MoEConfig(n_experts=2)), MoEConfig(n_experts=2))):
        pol = Policy(m.eval(), model_spec(kind, cfg, moe), names, stats, prompts)
        fast = evaluate_task(pol, names[0], episodes=3, seed=5, max_steps=30)
        full = evaluate_task(pol, names[0], episodes=3, seed=5, max_steps=30, full_forward=True)
        assert fast["length"].tolist() == full["length"].tolist()
        np.testing.assert_allclose(fast["return"], full["return"], rtol=1e-5, atol=1e-5, err_msg=kind)


def test_act_does_not_depend_on_the_batch():
    """Each row's action is the same alone as in a batch, as `get_action`'s: episodes leave the
    evaluation batch as they end. To fp32 rounding: bitwise on AVX2 CPUs, not where the GEMM
    kernel depends on the batch size (AVX-512 machines, 2026-12-06)."""
    m = next(m for n, m in models("normed") if n == "m3dt-dense").eval()
    cache = prompt_cache(m, prompt(1))
    for t in (1, 2, 4, 7):
        x = history(3, t, seed=t)
        rows = torch.cat([act(m, *(z[i : i + 1] for z in x), cache) for i in range(3)])
        torch.testing.assert_close(act(m, *x, cache), rows, rtol=1e-5, atol=1e-6, msg=f"t={t}")
