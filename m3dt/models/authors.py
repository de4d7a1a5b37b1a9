"""The authors' state dicts (KongYilun/M3DT) mapped onto ours: names, layouts, configs.

Their models are HuggingFace-GPT-2 based (`trajectory_gpt2.py`): linear layers inside the
transformer are `Conv1D`, which computes x @ W + b with W stored (in, out), the transpose of
`nn.Linear`'s (out, in). Mapping, per layer l:

| theirs (`PromptDecisionTransformer.state_dict()`) | ours (`PromptDT`) |
|---|---|
| `transformer.h.l.ln_1.*`, `ln_2.*` | `blocks.l.ln_1.*`, `ln_2.*` |
| `transformer.h.l.attn.c_attn.weight` (C, 3C) | `blocks.l.attn.c_attn.weight` (3C, C), transposed |
| `transformer.h.l.attn.c_proj.weight` (C, C) | `blocks.l.attn.c_proj.weight`, transposed |
| `transformer.h.l.mlp.c_fc.weight` (C, 4C), `c_proj.weight` (4C, C) | `blocks.l.mlp.*`, transposed |
| `transformer.ln_f.*` | `ln_f.*` |
| `predict_action.0.*` | `predict_action.*` |
| `embed_{timestep,return,state,action}.*` | `input_embed.{timestep,rtg,state,action}.*` |
| `prompt_embed_{timestep,return,state,action}.*` | `prompt_embed.{timestep,rtg,state,action}.*` |
| `embed_ln.*` | `embed_ln.*` |

Dropped (unused by the authors' action prediction): `transformer.wte.weight` (a 1-row token
table), the attention buffers `attn.bias` / `attn.masked_bias` (the causal mask),
`predict_state.*`, `predict_return.*`.

M3DT (`PromptDTMoE`): the backbone keys as above under `pretrained_pdt.`, and per layer l
`pretrained_pdt.transformer.h.l.moe.router.{fc1,fc2,fc_new,fc3,fc4}.*` (plus `noise_linear`
for the top-k router) and `...moe.experts.e.{c_fc,c_proj}.*` (duplicated under the
top-level `experts.l.e.` and `moes.l.`, which are the same modules). Their expert Conv1D
weights (C, 4C) / (4C, C) are exactly our stacked `fc_weight[e]` / `proj_weight[e]` layout
(x @ W), so experts are stacked, not transposed; the router's `nn.Linear` layers map onto
`router.net.{0,2,4,6,8}` unchanged. Their stage-3 `save_moe` file (`{"block_l":
MoE.state_dict()}`) holds the same router and expert keys without the prefix.

Configs: width, layers, state/action dims, timestep-table size, prompt embeddings, experts
and router kind are read from the tensor shapes; the head count cannot be (n_head, default
8 as the authors). The block form follows the authors: their Prompt-DT (stage 1 and the
dense baselines) is a standard GPT-2 block, `ffn_residual="stream"`; their M3DT computes
y = LN2 h; out = y + FFN(y) + MoE(y), `ffn_residual="normed"`. Their top-k router draws its
gate noise at evaluation too (`topk_eval_noise=True`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from m3dt.models.moe import MoEConfig
from m3dt.models.prompt_dt import PromptDTConfig, rename_legacy_embed

# Keys of the authors' models that carry nothing our models compute with.
_DROPPED = re.compile(r"^(transformer\.wte\.weight|transformer\.h\.\d+\.attn\.(bias|masked_bias)"
                      r"|predict_state\..*|predict_return\..*)$")
_EMBED = re.compile(r"^((prompt_)?embed_(timestep|return|state|action)|embed_ln)\.(weight|bias)$")
_BLOCK = re.compile(r"^transformer\.h\.(\d+)\.(ln_1|ln_2|attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.(weight|bias)$")
_ROUTER_LAYERS = ("fc1", "fc2", "fc_new", "fc3", "fc4")  # -> router.net.{0,2,4,6,8}


@dataclass(frozen=True)
class Converted:
    """Our state dict, model kind and configs of one converted authors' model."""

    kind: str  # "prompt_dt" | "m3dt"
    state: dict[str, Tensor]
    dt: PromptDTConfig
    moe: MoEConfig | None = None


def _need(sd: Mapping[str, Tensor], key: str, what: str) -> Tensor:
    if key not in sd:
        raise KeyError(f"{what}: missing key {key!r} (not an authors' {what}?)")
    return sd[key]


def convert_prompt_dt(sd: Mapping[str, Tensor], n_head: int = 8, ffn_residual: str = "stream",
                      what: str = "Prompt-DT state dict") -> Converted:
    """The authors' `PromptDecisionTransformer.state_dict()` as a `PromptDT` state dict."""
    state: dict[str, Tensor] = {}
    unknown: list[str] = []
    layers: set[int] = set()
    for key, value in sd.items():
        if _DROPPED.match(key):
            continue
        if _EMBED.match(key):  # our names before `TokenEmbedding` are the authors'
            state[rename_legacy_embed(key)] = value
            continue
        if key.startswith("predict_action.0."):
            state["predict_action." + key.rsplit(".", 1)[1]] = value
            continue
        if key.startswith("transformer.ln_f."):
            state["ln_f." + key.rsplit(".", 1)[1]] = value
            continue
        m = _BLOCK.match(key)
        if m is None:
            unknown.append(key)
            continue
        layer, module, param = int(m.group(1)), m.group(2), m.group(3)
        layers.add(layer)
        conv1d = module not in ("ln_1", "ln_2") and param == "weight"
        state[f"blocks.{layer}.{module}.{param}"] = value.t().contiguous() if conv1d else value
    if unknown:
        raise KeyError(f"{what}: keys the mapping does not know: {sorted(unknown)[:8]}")
    if not layers or sorted(layers) != list(range(len(layers))):
        raise KeyError(f"{what}: transformer layers {sorted(layers)} are not 0..n-1")
    state_w = _need(sd, "embed_state.weight", what)  # (C, state_dim)
    width, state_dim = state_w.shape
    act_dim = _need(sd, "embed_action.weight", what).shape[1]
    ffn = _need(sd, "transformer.h.0.mlp.c_fc.weight", what).shape[1]  # Conv1D (C, H)
    if ffn % width:
        raise ValueError(f"{what}: FFN width {ffn} is not a multiple of the width {width}")
    if width % n_head:
        raise ValueError(f"{what}: width {width} is not divisible by n_head {n_head}")
    dt = PromptDTConfig(state_dim=int(state_dim), act_dim=int(act_dim), width=int(width), n_layer=len(layers),
                        n_head=int(n_head), ffn_mult=ffn // width,
                        max_ep_len=int(_need(sd, "embed_timestep.weight", what).shape[0]),
                        use_prompt="prompt_embed_state.weight" in sd, ffn_residual=ffn_residual)  # type: ignore[arg-type]
    return Converted("prompt_dt" if dt.use_prompt else "mtdt", state, dt)


def _convert_moe_layer(layer: int, sd: Mapping[str, Tensor], what: str) -> tuple[dict[str, Tensor], int, bool]:
    """One layer's authors' `MoE.state_dict()` -> our `moes.<layer>.` entries, E, top-k router?"""
    experts = sorted({int(k.split(".")[1]) for k in sd if k.startswith("experts.")})
    if not experts or experts != list(range(len(experts))):
        raise KeyError(f"{what}: layer {layer} has experts {experts}, expected 0..E-1")
    known = {f"experts.{e}.{m}.{p}" for e in experts for m in ("c_fc", "c_proj") for p in ("weight", "bias")}
    known |= {f"router.{n}.{p}" for n in (*_ROUTER_LAYERS, "noise_linear") for p in ("weight", "bias")}
    unknown = sorted(set(sd) - known)
    if unknown:
        raise KeyError(f"{what}: layer {layer}: keys the mapping does not know: {unknown[:8]}")
    p = f"moes.{layer}."

    def stack(name: str) -> Tensor:
        return torch.stack([_need(sd, f"experts.{e}.{name}", what) for e in experts])

    out = {p + "experts.fc_weight": stack("c_fc.weight"),  # (E, C, H): Conv1D is already x @ W
           p + "experts.fc_bias": stack("c_fc.bias"),  # (E, H)
           p + "experts.proj_weight": stack("c_proj.weight"),  # (E, H, C)
           p + "experts.proj_bias": stack("c_proj.bias")}  # (E, C)
    for i, name in enumerate(_ROUTER_LAYERS):
        for param in ("weight", "bias"):
            out[f"{p}router.net.{2 * i}.{param}"] = _need(sd, f"router.{name}.{param}", what)
    topk = "router.noise_linear.weight" in sd
    if topk:
        for param in ("weight", "bias"):
            out[f"{p}router.noise_linear.{param}"] = sd[f"router.noise_linear.{param}"]
    return out, len(experts), topk


def convert_m3dt(backbone: Mapping[str, Tensor], moe_blocks: Mapping[str, Mapping[str, Tensor]], n_head: int = 8,
                 top_k: int | None = None, what: str = "M3DT state dict") -> Converted:
    """The authors' M3DT as an `M3DT` state dict: their backbone state dict (stage 1) and
    per-layer `MoE.state_dict()`s (`{"block_l": ...}`, their stage-3 `save_moe` file)."""
    base = convert_prompt_dt(backbone, n_head, ffn_residual="normed", what=what)
    if not base.dt.use_prompt:
        raise KeyError(f"{what}: the backbone has no prompt embeddings; M3DT is built on Prompt-DT")
    state = {f"backbone.{k}": v for k, v in base.state.items()}
    n_experts, kinds = set(), set()
    for layer in range(base.dt.n_layer):
        block = moe_blocks.get(f"block_{layer}")
        if block is None:
            raise KeyError(f"{what}: no MoE for layer {layer} (expected key 'block_{layer}')")
        part, E, topk = _convert_moe_layer(layer, block, what)
        state.update(part)
        n_experts.add(E)
        kinds.add(topk)
    if len(n_experts) != 1 or len(kinds) != 1:
        raise ValueError(f"{what}: layers differ in expert count {sorted(n_experts)} or router kind")
    E, topk = n_experts.pop(), kinds.pop()
    if topk and top_k is None:
        raise ValueError(f"{what}: a top-k router (noise_linear present) needs top_k")
    hidden = state["moes.0.router.net.0.weight"].shape[0]  # (mC, C)
    moe = MoEConfig(n_experts=E, router="topk" if topk else "dense", top_k=int(top_k or 1) if topk else 4,
                    router_hidden_mult=hidden // base.dt.width, topk_eval_noise=True)
    return Converted("m3dt", state, base.dt, moe)


def split_prompt_dt_moe(sd: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]]]:
    """A full `PromptDTMoE.state_dict()` as (backbone state dict, `{"block_l": MoE state}`).

    The backbone keys sit under `pretrained_pdt.` with each block's `moe.` inside it; the
    top-level `experts.` and `moes.` copies of the same modules are skipped."""
    backbone: dict[str, Tensor] = {}
    blocks: dict[str, dict[str, Tensor]] = {}
    moe_key = re.compile(r"^transformer\.h\.(\d+)\.moe\.(.+)$")
    for key, value in sd.items():
        if not key.startswith("pretrained_pdt."):
            continue
        k = key[len("pretrained_pdt."):]
        m = moe_key.match(k)
        if m:
            blocks.setdefault(f"block_{m.group(1)}", {})[m.group(2)] = value
        else:
            backbone[k] = value
    if not backbone:
        raise KeyError("M3DT state dict: no 'pretrained_pdt.' keys (not an authors' PromptDTMoE state dict?)")
    return backbone, blocks
