"""Importing the authors' (KongYilun/M3DT) checkpoints: the converted models act exactly as a
reference forward written from the authors' code (`prompt_decision_transformer.py`,
`trajectory_gpt2.py`, `prompt_decision_transformer_with_moe.py`), in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from m3dt import tasks
from m3dt.data.store import write_task_data
from m3dt.models import Segment
from m3dt.models.authors import convert_m3dt, convert_prompt_dt
from m3dt.train.import_checkpoint import convert, load_converted

C, L, NH, S, A, EP, NPOS, E, K = 16, 2, 2, 39, 8, 60, 128, 3, 20  # K: the authors' max_length (our context_len)


def authors_backbone(seed=0, dtype=torch.float64):
    """A `PromptDecisionTransformer.state_dict()` with the authors' names and shapes, random values."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.3):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale)

    sd = {"transformer.wte.weight": r(1, C)}
    for l in range(L):
        p = f"transformer.h.{l}."
        sd.update({p + "ln_1.weight": 1 + r(C, scale=0.1), p + "ln_1.bias": r(C, scale=0.1),
                   p + "attn.bias": torch.tril(torch.ones(NPOS, NPOS, dtype=torch.uint8)).view(1, 1, NPOS, NPOS),
                   p + "attn.masked_bias": torch.tensor(-1e4),
                   p + "attn.c_attn.weight": r(C, 3 * C), p + "attn.c_attn.bias": r(3 * C, scale=0.1),
                   p + "attn.c_proj.weight": r(C, C), p + "attn.c_proj.bias": r(C, scale=0.1),
                   p + "ln_2.weight": 1 + r(C, scale=0.1), p + "ln_2.bias": r(C, scale=0.1),
                   p + "mlp.c_fc.weight": r(C, 4 * C), p + "mlp.c_fc.bias": r(4 * C, scale=0.1),
                   p + "mlp.c_proj.weight": r(4 * C, C), p + "mlp.c_proj.bias": r(C, scale=0.1)})
    sd.update({"transformer.ln_f.weight": 1 + r(C, scale=0.1), "transformer.ln_f.bias": r(C, scale=0.1)})
    for pre in ("", "prompt_"):
        sd.update({pre + "embed_timestep.weight": r(EP, C), pre + "embed_return.weight": r(C, 1),
                   pre + "embed_return.bias": r(C), pre + "embed_state.weight": r(C, S), pre + "embed_state.bias": r(C),
                   pre + "embed_action.weight": r(C, A), pre + "embed_action.bias": r(C)})
    sd.update({"embed_ln.weight": 1 + r(C, scale=0.1), "embed_ln.bias": r(C, scale=0.1),
               "predict_state.weight": r(S, C), "predict_state.bias": r(S),
               "predict_action.0.weight": r(A, C), "predict_action.0.bias": r(A),
               "predict_return.weight": r(1, C), "predict_return.bias": r(1)})
    return sd


def authors_moe(seed=1, dtype=torch.float64):
    """Their stage-3 `save_moe` dict: {"block_l": MoE.state_dict()} (dense router, E experts)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.3):
        return torch.randn(*shape, generator=g, dtype=dtype) * scale

    out = {}
    for l in range(L):
        blk = {}
        dims = [("fc1", C, 4 * C), ("fc2", 4 * C, 4 * C), ("fc_new", 4 * C, 4 * C), ("fc3", 4 * C, 2 * C), ("fc4", 2 * C, E)]
        for name, i, o in dims:
            blk[f"router.{name}.weight"], blk[f"router.{name}.bias"] = r(o, i), r(o, scale=0.1)
        for e in range(E):
            blk.update({f"experts.{e}.c_fc.weight": r(C, 4 * C), f"experts.{e}.c_fc.bias": r(4 * C, scale=0.1),
                        f"experts.{e}.c_proj.weight": r(4 * C, C), f"experts.{e}.c_proj.bias": r(C, scale=0.1)})
        out[f"block_{l}"] = blk
    return out


# ------------------------------------------------------------- reference: the authors' forward


def _ln(x, sd, p):
    return F.layer_norm(x, (C,), sd[p + ".weight"], sd[p + ".bias"], eps=1e-5)


def _conv1d(x, sd, p):  # transformers' Conv1D: x @ W + b, W (in, out)
    return x @ sd[p + ".weight"] + sd[p + ".bias"]


def _attn(x, sd, p, ext_mask):
    B, T, _ = x.shape
    q, k, v = _conv1d(x, sd, p + ".c_attn").split(C, dim=2)
    q = q.view(B, T, NH, C // NH).permute(0, 2, 1, 3)
    k = k.view(B, T, NH, C // NH).permute(0, 2, 3, 1)
    v = v.view(B, T, NH, C // NH).permute(0, 2, 1, 3)
    w = (q @ k) / math.sqrt(v.size(-1))
    mask = sd[p + ".bias"][:, :, T - T:T, :T]
    w = torch.where(mask.bool(), w, sd[p + ".masked_bias"].to(w.dtype))
    w = torch.softmax(w + ext_mask, dim=-1)
    a = (w @ v).permute(0, 2, 1, 3).reshape(B, T, C)
    return _conv1d(a, sd, p + ".c_proj")


def _mlp(x, sd, p):
    return _conv1d(F.relu(_conv1d(x, sd, p + ".c_fc")), sd, p + ".c_proj")


def _moe(y, blk):
    h = y
    for name in ("fc1", "fc2", "fc_new", "fc3"):
        h = F.relu(h @ blk[f"router.{name}.weight"].T + blk[f"router.{name}.bias"])
    gate = torch.softmax(h @ blk["router.fc4.weight"].T + blk["router.fc4.bias"], dim=-1)
    out = torch.zeros_like(y)
    for e in range(E):
        out = out + gate[:, :, e:e + 1] * _mlp(y, blk, f"experts.{e}")
    return out


def _forward(sd, states, actions, rtg, timesteps, mask, prompt, moe=None):
    B, T = states.shape[:2]
    lin = lambda x, p: x @ sd[p + ".weight"].T + sd[p + ".bias"]  # noqa: E731
    t = sd["embed_timestep.weight"][timesteps]
    stacked = torch.stack((lin(rtg, "embed_return") + t, lin(states, "embed_state") + t,
                           lin(actions, "embed_action") + t), dim=1).permute(0, 2, 1, 3).reshape(B, 3 * T, C)
    stacked = _ln(stacked, sd, "embed_ln")
    smask = torch.stack((mask, mask, mask), dim=1).permute(0, 2, 1).reshape(B, 3 * T)
    ps, pa, prtg, pt, pm = prompt
    Tp = ps.shape[1]
    tp = sd["prompt_embed_timestep.weight"][pt]
    pstacked = torch.stack((lin(prtg, "prompt_embed_return") + tp, lin(ps, "prompt_embed_state") + tp,
                            lin(pa, "prompt_embed_action") + tp), dim=1).permute(0, 2, 1, 3).reshape(1, 3 * Tp, C)
    pmask = torch.stack((pm, pm, pm), dim=1).permute(0, 2, 1).reshape(1, 3 * Tp)
    h = torch.cat((pstacked.repeat(B, 1, 1), stacked), dim=1)
    m = torch.cat((pmask.repeat(B, 1), smask), dim=1)
    ext = (1.0 - m[:, None, None, :].to(h.dtype)) * -10000.0
    for l in range(L):
        p = f"transformer.h.{l}"
        h = _attn(_ln(h, sd, p + ".ln_1"), sd, p + ".attn", ext) + h
        if moe is None:  # GPT-2 block (their Prompt-DT)
            h = h + _mlp(_ln(h, sd, p + ".ln_2"), sd, p + ".mlp")
        else:  # TransformerBlockWithMOE
            y = _ln(h, sd, p + ".ln_2")
            h = y + _mlp(y, sd, p + ".mlp") + _moe(y, moe[f"block_{l}"])
    h = _ln(h, sd, "transformer.ln_f")
    x = h.reshape(B, -1, 3, C).permute(0, 2, 1, 3)
    return torch.tanh(lin(x[:, 1], "predict_action.0"))[:, -T:]


def authors_get_action(sd, states, actions, rtg, timesteps, prompt, moe=None):
    """Their `get_action`: the last K steps, left-padded with zeros, batch 1."""
    states, actions, rtg, timesteps = states[-K:], actions[-K:], rtg[-K:], timesteps[-K:]
    n = states.shape[0]
    mask = torch.cat([torch.zeros(K - n), torch.ones(n)]).long()[None]
    pad = lambda x: torch.cat([torch.zeros(K - n, *x.shape[1:], dtype=x.dtype), x])[None]  # noqa: E731
    out = _forward(sd, pad(states), pad(actions), pad(rtg), pad(timesteps).long(), mask, prompt, moe)
    return out[0, -1]


def _history(t, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(t, S, generator=g, dtype=torch.float64), torch.rand(t, A, generator=g, dtype=torch.float64) * 2 - 1,
            torch.rand(t, 1, generator=g, dtype=torch.float64) * 4, torch.arange(3, 3 + t))


def _prompt(seed):
    g = torch.Generator().manual_seed(seed)
    Tp = 5
    return (torch.randn(1, Tp, S, generator=g, dtype=torch.float64),
            torch.rand(1, Tp, A, generator=g, dtype=torch.float64) * 2 - 1,
            torch.rand(1, Tp, 1, generator=g, dtype=torch.float64), torch.arange(40, 40 + Tp)[None],
            torch.ones(1, Tp, dtype=torch.long))


def _ours(model, t, seed, prompt):
    s, a, r, ts = _history(t, seed)
    return model.get_action(s[None], a[None], r[None], ts[None], prompt=Segment(*prompt))[0]


@pytest.mark.parametrize("t", [3, K, K + 6])  # shorter than K (padding), K, longer (cut)
def test_prompt_dt_import_acts_as_the_authors_model(t):
    sd = authors_backbone()
    conv = convert_prompt_dt(sd, n_head=NH)
    assert conv.kind == "prompt_dt" and conv.dt.ffn_residual == "stream"  # their stage 1 is a GPT-2 block
    assert (conv.dt.width, conv.dt.n_layer, conv.dt.max_ep_len, conv.dt.state_dim, conv.dt.act_dim) == (C, L, EP, S, A)
    model = load_converted(conv, torch.float64)
    prompt = _prompt(7)
    for seed in range(3):
        ref = authors_get_action(sd, *_history(t, seed), prompt)
        got = _ours(model, t, seed, prompt)
        assert (got - ref).abs().max().item() <= 1e-10, (got, ref)
    # the authors' weights were really used: a different state dict acts differently
    other = load_converted(convert_prompt_dt(authors_backbone(seed=5), n_head=NH), torch.float64)
    assert (_ours(other, t, 0, prompt) - _ours(model, t, 0, prompt)).abs().max() > 1e-3


@pytest.mark.parametrize("full", [False, True])
def test_m3dt_import_acts_as_the_authors_model(full):
    sd, moe = authors_backbone(), authors_moe()
    if full:  # a whole PromptDTMoE.state_dict(): backbone under pretrained_pdt., MoE inside its blocks, plus copies
        src = {f"pretrained_pdt.{k}": v for k, v in sd.items()}
        for l in range(L):
            for k, v in moe[f"block_{l}"].items():
                src[f"pretrained_pdt.transformer.h.{l}.moe.{k}"] = v
                src[f"moes.{l}.{k}"] = v
        conv = convert("m3dt", src, None, n_head=NH)
    else:
        conv = convert("m3dt", sd, moe, n_head=NH)
    assert conv.kind == "m3dt" and conv.dt.ffn_residual == "normed"
    assert conv.moe.n_experts == E and conv.moe.router == "dense" and conv.moe.router_hidden_mult == 4
    model = load_converted(conv, torch.float64)
    prompt = _prompt(3)
    for t, seed in [(2, 0), (K + 4, 1)]:
        ref = authors_get_action(sd, *_history(t, seed), prompt, moe)
        got = _ours(model, t, seed, prompt)
        assert (got - ref).abs().max().item() <= 1e-10, (got, ref)
    no_moe = authors_get_action(sd, *_history(2, 0), prompt)  # the experts matter
    assert (no_moe - authors_get_action(sd, *_history(2, 0), prompt, moe)).abs().max() > 1e-3


def test_bad_input_names_the_problem():
    sd = authors_backbone()
    with pytest.raises(KeyError, match="keys the mapping does not know: \\['transformer.h.0.adapter.weight'\\]"):
        convert_prompt_dt({**sd, "transformer.h.0.adapter.weight": torch.zeros(1)})
    broken = dict(sd)
    del broken["embed_state.weight"]
    with pytest.raises(KeyError, match="missing key 'embed_state.weight'"):
        convert_prompt_dt(broken)
    with pytest.raises(ValueError, match="not divisible by n_head 3"):
        convert_prompt_dt(sd, n_head=3)
    moe = authors_moe()
    del moe["block_1"]
    with pytest.raises(KeyError, match="no MoE for layer 1"):
        convert_m3dt(sd, moe, n_head=NH)
    topk = authors_moe()
    for blk in topk.values():
        blk["router.noise_linear.weight"], blk["router.noise_linear.bias"] = torch.zeros(E, C), torch.zeros(E)
    with pytest.raises(ValueError, match="needs top_k"):
        convert_m3dt(sd, topk, n_head=NH)
    conv = convert_m3dt(sd, topk, n_head=NH, top_k=2)
    assert conv.moe.router == "topk" and conv.moe.top_k == 2 and conv.moe.topk_eval_noise


def test_cli_writes_a_checkpoint_evaluate_reads(tmp_path, capsys):
    from m3dt.__main__ import main
    from m3dt.evaluate import evaluate_task
    from m3dt.policy import load_policy

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    names = ["cartpole-balance", "cheetah-vel-0"]
    for name in names:
        spec = tasks.get(name)
        eps = [{"observations": rng.normal(size=(T, spec.obs_dim)).astype(np.float32),
                "actions": rng.uniform(-1, 1, (T, spec.action_dim)).astype(np.float32),
                "rewards": rng.uniform(0, 1, T).astype(np.float32),
                "terminals": np.arange(T) == T - 1} for T in (12, 9, 15, 10)]
        write_task_data(data / f"{name}.h5", name, eps)
    sd = {k: v.float() for k, v in authors_backbone().items()}
    src = tmp_path / "authors.pt"
    torch.save(sd, src)
    out = tmp_path / "ours.pt"
    assert main(["import-checkpoint", "--src", str(src), "--kind", "prompt_dt", "--data", str(data),
                 "--n-head", str(NH), "--out", str(out)]) == 0
    pol = load_policy(out)
    assert pol.tasks == names and pol.spec["kind"] == "prompt_dt" and pol.spec["dt"]["ffn_residual"] == "stream"
    ref = load_converted(convert_prompt_dt(sd, n_head=NH))
    for name, p in pol.model.state_dict().items():
        torch.testing.assert_close(p, ref.state_dict()[name], rtol=0, atol=0)
    df = evaluate_task(pol, "cartpole-balance", episodes=2, seed=0, max_steps=3)
    assert len(df) == 2 and df["length"].tolist() == [3, 3]
    moe_src = tmp_path / "moe.pt"
    torch.save({b: {k: v.float() for k, v in blk.items()} for b, blk in authors_moe().items()}, moe_src)
    out2 = tmp_path / "m3dt.pt"
    assert main(["import-checkpoint", "--src", str(src), "--moe", str(moe_src), "--kind", "m3dt", "--data", str(data),
                 "--tasks", "cheetah-vel-0", "--n-head", str(NH), "--out", str(out2)]) == 0
    pol2 = load_policy(out2)
    assert pol2.tasks == ["cheetah-vel-0"] and pol2.spec["moe"]["n_experts"] == E
    assert len(evaluate_task(pol2, "cheetah-vel-0", max_steps=2)) == 1
    capsys.readouterr()
    assert main(["import-checkpoint", "--src", str(tmp_path / "missing.pt"), "--kind", "prompt_dt",
                 "--out", str(out)]) == 1  # one line on stderr, exit 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--src" in err and "missing.pt does not exist" in err, err
