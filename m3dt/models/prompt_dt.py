"""Prompt-DT: the multi-task Decision Transformer backbone of M3DT (paper.md §1).

One config dataclass, one module per concept (attention, MLP, block, model), nanoGPT style.

Tokens per timestep are (R_t, s_t, a_t), interleaved R_1, s_1, a_1, R_2, ...; each modality
has its own Linear embedding and a learned timestep embedding (`max_ep_len` entries) is
added to the three tokens of a timestep. There is no positional embedding. A prompt (a few
timesteps of the same task) is embedded with a second, separate set of embeddings and
prepended. Each set is one `TokenEmbedding`: `PromptDT.input_embed` and `.prompt_embed`. The action a_t is predicted from the *state* token s_t (Linear -> tanh).

Facts taken from the authors' code (KongYilun/M3DT, `prompt_decision_transformer.py` and
`trajectory_gpt2.py`), kept so that the model computes the same function:

- the embedding LayerNorm is applied to the input tokens only, not to the prompt tokens;
- embedding dropout, attention dropout and residual dropout all use `dropout`;
- attention scores are scaled by 1/sqrt(head_dim); a final LayerNorm `ln_f` follows the
  last block;
- initialisation: Linear layers inside the transformer (blocks) are N(0, 0.02) with zero
  bias, LayerNorms are (1, 0); the embeddings and the action head keep PyTorch's default
  initialisation (they sit outside the authors' GPT-2 module).

Left out on purpose: the authors' unused state and return prediction heads and the GPT-2
token table of one row (`num_params(authors_convention=True)` adds their sizes back, for
comparing with the paper's parameter counts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Width presets: name -> width (6 layers, 8 heads). The paper's sizes are in PAPER_PARAMS.
WIDTH_PRESETS: dict[str, int] = {"1.5M": 128, "5M": 256, "20M": 512, "173M": 1536}
# Parameter counts the paper reports (or that follow from its numbers) per width.
PAPER_PARAMS: dict[int, float] = {128: 1.47e6, 256: 5.3e6, 512: 20e6, 1536: 173.3e6}

FfnResidual = Literal["normed", "stream"]


@dataclass(frozen=True)
class PromptDTConfig:
    """Hyperparameters of Prompt-DT; the defaults are the paper's (5M backbone)."""

    state_dim: int = 39  # observations zero-padded to 39 dims (Meta-World)
    act_dim: int = 8  # actions padded to 8 dims (ant-dir)
    width: int = 256  # n_embd
    n_layer: int = 6
    n_head: int = 8
    ffn_mult: int = 4  # FFN hidden = ffn_mult * width
    dropout: float = 0.1  # embedding, attention and residual dropout
    max_ep_len: int = 1000  # entries of the timestep embedding
    context_len: int = 20  # K: timesteps per input segment
    prompt_len: int = 5  # timesteps per prompt segment
    use_prompt: bool = True  # False: MTDT (no prompt embeddings)
    action_tanh: bool = True
    # Where the FFN residual is taken, see `Block`:
    # "stream": out = h + FFN(LN2(h)), standard GPT-2: the authors' stage-1 Prompt-DT and
    #           their dense baselines (default);
    # "normed": out = LN2(h) + FFN(LN2(h)), the authors' M3DT block (stages 2 and 3).
    ffn_residual: FfnResidual = "stream"

    def __post_init__(self) -> None:
        assert self.state_dim > 0 and self.act_dim > 0, "state_dim and act_dim must be > 0"
        assert self.width > 0 and self.n_layer > 0 and self.n_head > 0 and self.ffn_mult > 0, (
            f"width, n_layer, n_head and ffn_mult must be > 0, got {self.width}, {self.n_layer}, {self.n_head}, "
            f"{self.ffn_mult}")
        assert self.width % self.n_head == 0, f"width {self.width} not divisible by n_head {self.n_head}"
        assert 0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"
        assert self.max_ep_len > 0 and self.context_len > 0 and self.prompt_len > 0, (
            f"max_ep_len, context_len and prompt_len must be > 0, got {self.max_ep_len}, {self.context_len}, "
            f"{self.prompt_len}")
        assert self.ffn_residual in ("normed", "stream"), f"unknown ffn_residual {self.ffn_residual!r}"

    @property
    def n_embd(self) -> int:
        return self.width

    @classmethod
    def from_preset(cls, preset: str | int, **overrides) -> PromptDTConfig:
        """Config of a paper size: a name of WIDTH_PRESETS ("1.5M", "5M", "20M", "173M") or a width."""
        width = WIDTH_PRESETS[preset] if isinstance(preset, str) else int(preset)
        assert width in PAPER_PARAMS, f"no paper preset of width {width}; presets: {WIDTH_PRESETS}"
        return cls(width=width, **overrides)


class Segment(NamedTuple):
    """A left-padded trajectory segment: the model's input, or a prompt."""

    states: Tensor  # (B, T, state_dim) float
    actions: Tensor  # (B, T, act_dim) float
    rtg: Tensor  # (B, T, 1) float, returns-to-go already divided by the suite's scale
    timesteps: Tensor  # (B, T) long, in [0, max_ep_len)
    attn_mask: Tensor  # (B, T) 1 on real timesteps, 0 on left padding


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a per-sequence key mask."""

    def __init__(self, cfg: PromptDTConfig):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.c_attn = nn.Linear(cfg.width, 3 * cfg.width)  # q, k, v for all heads
        self.c_proj = nn.Linear(cfg.width, cfg.width)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """x (B, T, C); allowed (B, 1, T, T) bool, True where query t may attend key t'."""
        return self.attend(*self.qkv(x), allowed)

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, C) -> queries, keys, values, each (B, nh, T, hs)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        return tuple(z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))  # type: ignore

    def attend(self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor) -> Tensor:
        """q (B, nh, Tq, hs), k and v (B, nh, Tk, hs), allowed (B, 1, Tq, Tk) -> (B, Tq, C)."""
        B, nh, Tq, hs = q.shape
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )  # (B, nh, Tq, hs)
        y = y.transpose(1, 2).contiguous().view(B, Tq, nh * hs)  # (B, Tq, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """The FFN: width -> ffn_mult * width -> width, ReLU, dropout on the output."""

    def __init__(self, cfg: PromptDTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.width, cfg.ffn_mult * cfg.width)
        self.c_proj = nn.Linear(cfg.ffn_mult * cfg.width, cfg.width)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.relu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Pre-LN transformer block, in the form M3DT extends with a mixture of experts.

        h   = x + Attn(LN1(x))
        y   = LN2(h)
        out = h + FFN(y) [+ extra(y)]     ffn_residual = "stream" (default, GPT-2)
        out = y + FFN(y) [+ extra(y)]     ffn_residual = "normed"

    `extra` is the M3DT mixture of experts of this layer (None for the plain backbone).
    The authors' stage-1 Prompt-DT and their dense baselines (Prompt-DT, MTDT, HarmoDT)
    use the standard GPT-2 block ("stream", `trajectory_gpt2.py`); their M3DT blocks
    (stages 2 and 3, on the frozen backbone) take the FFN residual *after* LN2 ("normed",
    `prompt_decision_transformer_with_moe.py`), so their M3DT is not an extension of the
    very function trained in stage 1. `M3DT.from_backbone` makes that switch by default
    (`train.m3dt_block`).
    """

    def __init__(self, cfg: PromptDTConfig):
        super().__init__()
        self.normed_residual = cfg.ffn_residual == "normed"
        self.ln_1 = nn.LayerNorm(cfg.width)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.width)
        self.mlp = MLP(cfg)

    def forward(
        self,
        x: Tensor,
        allowed: Tensor,
        extra: Callable[[Tensor], Tensor] | None = None,
        prefix: tuple[Tensor, Tensor] | None = None,
        query: slice | None = None,
    ) -> Tensor:
        """x (B, T, C) -> (B, Tq, C); allowed (B, 1, Tq, Tp + T).

        Inference shortcuts (`m3dt.models.inference`), exact: `prefix` = cached keys and
        values (Bp, nh, Tp, hs) of tokens that precede x (the prompt), Bp in (1, B); `query`
        = the tokens of x whose output is wanted (default all: Tq = T).
        """
        a = self.ln_1(x)  # (B, T, C)
        q, k, v = self.attn.qkv(a)  # 3 x (B, nh, T, hs)
        if prefix is not None:
            B = x.shape[0]
            k, v = (torch.cat((p.expand(B, -1, -1, -1), z), dim=2) for p, z in zip(prefix, (k, v)))  # (B, nh, Tp+T, hs)
        if query is not None:
            q, x = q[:, :, query], x[:, query]  # (B, nh, Tq, hs), (B, Tq, C)
        h = x + self.attn.attend(q, k, v, allowed)  # (B, Tq, C)
        y = self.ln_2(h)  # (B, Tq, C)
        out = (y if self.normed_residual else h) + self.mlp(y)
        if extra is not None:
            out = out + extra(y)
        return out  # (B, T, C)


class TokenEmbedding(nn.Module):
    """The embeddings of one token stream (the input, or the prompt): a learned timestep
    embedding and one Linear per modality, the timestep embedding added to each token.

    Submodules (state-dict names `<stream>.timestep`, `.rtg`, `.state`, `.action`; before
    they were `embed_timestep`, `embed_return`, ... on the model, see `LEGACY_EMBED_NAMES`):

        timestep  nn.Embedding(max_ep_len, C)
        rtg       nn.Linear(1, C)            the return-to-go
        state     nn.Linear(state_dim, C)
        action    nn.Linear(act_dim, C)

    They are created in this order (that of the authors' `embed_timestep, embed_return,
    embed_state, embed_action`), which fixes the RNG draws of their initialisation.
    """

    def __init__(self, cfg: PromptDTConfig):
        super().__init__()
        C = cfg.width
        self.timestep = nn.Embedding(cfg.max_ep_len, C)
        self.rtg = nn.Linear(1, C)
        self.state = nn.Linear(cfg.state_dim, C)
        self.action = nn.Linear(cfg.act_dim, C)

    def forward(self, seg: Segment) -> Tensor:
        """(B, T, ...) segment -> (B, 3T, C) tokens R_1, s_1, a_1, R_2, ..., the timestep
        embedding added to each."""
        time = self.timestep(seg.timesteps)  # (B, T, C)
        r = self.rtg(seg.rtg) + time  # (B, T, C)
        s = self.state(seg.states) + time  # (B, T, C)
        a = self.action(seg.actions) + time  # (B, T, C)
        B, T, C = s.shape
        return torch.stack((r, s, a), dim=2).reshape(B, 3 * T, C)  # (B, T, 3, C) -> (B, 3T, C)


#: state-dict names of the embeddings before `TokenEmbedding` (also the authors' names):
#: old module name -> new one
LEGACY_EMBED_NAMES: dict[str, str] = {
    f"{old_stream}embed_{old}": f"{new_stream}.{new}"
    for old_stream, new_stream in (("", "input_embed"), ("prompt_", "prompt_embed"))
    for old, new in (("timestep", "timestep"), ("return", "rtg"), ("state", "state"), ("action", "action"))
}
# a legacy name as one component of a dotted key ("dt.embed_state.weight"), or of a HarmoDT
# mask buffer, whose name is the parameter name with "." -> "__" ("masks.embed_state__weight")
_LEGACY_EMBED = re.compile(r"(^|\.)((?:prompt_)?embed_(?:timestep|return|state|action))(\.|__)")


def rename_legacy_embed(key: str) -> str:
    """A state-dict key with the embeddings' old names (`embed_state.weight`,
    `backbone.prompt_embed_return.bias`, HarmoDT's `masks.embed_timestep__weight`) under
    their `TokenEmbedding` names (`input_embed.state.weight`, ...); other keys, and keys
    already renamed, unchanged."""

    def new(m: re.Match) -> str:
        sep = m.group(3)
        return m.group(1) + LEGACY_EMBED_NAMES[m.group(2)].replace(".", sep) + sep

    return _LEGACY_EMBED.sub(new, key)


class PromptDT(nn.Module):
    """Prompt-DT. `forward` returns the predicted actions (B, K, act_dim) of one segment."""

    def __init__(self, cfg: PromptDTConfig):
        super().__init__()
        self.cfg = cfg
        C = cfg.width
        # creation order = order of the initialisation's RNG draws: input, prompt, embed_ln
        self.input_embed = TokenEmbedding(cfg)
        if cfg.use_prompt:  # a second, separate set of embeddings for the prompt
            self.prompt_embed = TokenEmbedding(cfg)
        self.embed_ln = nn.LayerNorm(C)  # on the input tokens only
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(C)
        self.predict_action = nn.Linear(C, cfg.act_dim)
        for module in (*self.blocks, self.ln_f):
            module.apply(init_transformer_weights)

    # ---------------------------------------------------------------- forward pieces

    def _check(self, seg: Segment, what: str) -> None:
        B, T = seg.timesteps.shape
        cfg = self.cfg
        assert seg.states.shape == (
            B,
            T,
            cfg.state_dim,
        ), f"{what} states {tuple(seg.states.shape)} != {(B, T, cfg.state_dim)}"
        assert seg.actions.shape == (
            B,
            T,
            cfg.act_dim,
        ), f"{what} actions {tuple(seg.actions.shape)} != {(B, T, cfg.act_dim)}"
        assert seg.rtg.shape == (B, T, 1), f"{what} rtg {tuple(seg.rtg.shape)} != {(B, T, 1)}"
        assert seg.attn_mask.shape == (B, T), f"{what} attn_mask {tuple(seg.attn_mask.shape)} != {(B, T)}"

    def embed(self, seg: Segment, prompt: Segment | tuple | None = None) -> tuple[Tensor, Tensor]:
        """Embedded tokens (B, 3(Kp + K), C), after dropout, and the attention mask (B, 1, T', T')."""
        seg = Segment(*seg)
        self._check(seg, "input")
        B, K = seg.timesteps.shape
        x = self.embed_ln(self.input_embed(seg))  # (B, 3K, C)
        keys = seg.attn_mask.bool().repeat_interleave(3, dim=1)  # (B, 3K)
        if prompt is not None:
            assert self.cfg.use_prompt, "this model has no prompt embeddings (use_prompt=False)"
            pr = Segment(*prompt)
            Bp = pr.timesteps.shape[0]
            assert Bp in (1, B), f"prompt batch {Bp} must be 1 or the input batch {B}"
            self._check(pr, "prompt")
            px = self.prompt_embed(pr)  # (Bp, 3Kp, C); no embed_ln, as the authors
            pkeys = pr.attn_mask.bool().repeat_interleave(3, dim=1)  # (Bp, 3Kp)
            x = torch.cat((px.expand(B, -1, -1), x), dim=1)  # (B, 3(Kp + K), C)
            keys = torch.cat((pkeys.expand(B, -1), keys), dim=1)  # (B, 3(Kp + K))
        return self.drop(x), attention_mask(keys)

    def head(self, x: Tensor, K: int) -> Tensor:
        """Final LayerNorm and action head on the last K timesteps: (B, T', C) -> (B, K, act_dim)."""
        B = x.shape[0]
        s = x[:, -3 * K :].view(B, K, 3, -1)[:, :, 1]  # (B, K, C): the state tokens
        return self.action_head(s)  # (B, K, act_dim)

    def action_head(self, s: Tensor) -> Tensor:
        """Final LayerNorm, Linear and tanh on state tokens: (..., C) -> (..., act_dim)."""
        a = self.predict_action(self.ln_f(s))  # (..., act_dim)
        return torch.tanh(a) if self.cfg.action_tanh else a

    def decoder_parts(self) -> tuple[PromptDT, list[Callable[[Tensor], Tensor] | None]]:
        """This backbone and the extra FFN-side term of each block (none for Prompt-DT);
        what `m3dt.models.inference` runs."""
        return self, [None] * self.cfg.n_layer

    def forward(self, seg: Segment, prompt: Segment | tuple | None = None) -> Tensor:
        """Predicted actions (B, K, act_dim) of the `Segment` `seg` (states (B, K, state_dim),
        actions (B, K, act_dim), rtg (B, K, 1), timesteps (B, K) long, attn_mask (B, K) with 1
        on real timesteps and 0 on the left padding); `prompt` a `Segment` (or a tuple in its
        order) of shapes (B or 1, Kp, ...), or None.
        """
        x, allowed = self.embed(seg, prompt)
        for block in self.blocks:
            x = block(x, allowed)
        return self.head(x, seg.timesteps.shape[1])

    @staticmethod
    def loss(pred: Tensor, target_actions: Tensor, action_mask: Tensor, attn_mask: Tensor) -> Tensor:
        """Masked action MSE, see `masked_action_loss`."""
        return masked_action_loss(pred, target_actions, action_mask, attn_mask)

    @torch.no_grad()
    def get_action(
        self,
        states: Tensor,
        actions: Tensor,
        rtg: Tensor,
        timesteps: Tensor,
        prompt: Segment | tuple | None = None,
    ) -> Tensor:
        """The action for the last step of each history: (B, act_dim).

        Histories (B, t, ...) of any length t >= 1 (all of the same length; `actions` holds
        a placeholder for the current step) are cut to the last K = context_len steps and
        left-padded to K.
        """
        K = self.cfg.context_len
        states, actions, rtg, timesteps = (z[:, -K:] for z in (states, actions, rtg, timesteps))
        B, t = timesteps.shape
        mask = torch.ones(B, K, dtype=torch.long, device=states.device)
        if t < K:
            pad = K - t
            mask[:, :pad] = 0
            states, actions, rtg = (F.pad(z, (0, 0, pad, 0)) for z in (states, actions, rtg))  # zeros on the left
            timesteps = F.pad(timesteps, (pad, 0))
        return self(Segment(states, actions, rtg, timesteps.long(), mask), prompt)[:, -1]  # (B, act_dim)

    # ---------------------------------------------------------------- bookkeeping

    def num_params(self, authors_convention: bool = False) -> int:
        """Number of parameters.

        With `authors_convention`, adds the sizes of the modules the authors' model holds
        but never uses (state and return prediction heads, a 1-row GPT-2 token table, and
        for MTDT the prompt embeddings), which the paper's parameter counts include.
        """
        n = sum(p.numel() for p in self.parameters())
        if authors_convention:
            C, S = self.cfg.width, self.cfg.state_dim
            n += (C * S + S) + (C + 1) + C
            if not self.cfg.use_prompt:
                n += sum(p.numel() for p in self.input_embed.parameters())  # the same sizes
        return n

    def conflict_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameter groups of the per-module gradient-conflict analysis (paper Fig. 12)."""
        groups: dict[str, list[nn.Parameter]] = {"embeddings": [], "attention": [], "mlp": [], "other": []}
        for name, p in self.named_parameters():
            if name.startswith(("input_embed.", "prompt_embed.")):
                groups["embeddings"].append(p)
            elif ".attn." in name:
                groups["attention"].append(p)
            elif ".mlp." in name:
                groups["mlp"].append(p)
            else:
                groups["other"].append(p)  # LayerNorms, action head
        return groups


class MTDT(PromptDT):
    """Multi-task DT: Prompt-DT without prompt (no prompt embeddings, forward without `prompt`)."""

    def __init__(self, cfg: PromptDTConfig):
        super().__init__(replace(cfg, use_prompt=False))


# ------------------------------------------------------------------------- helpers


def attention_mask(keys: Tensor) -> Tensor:
    """Causal mask over real keys: keys (B, T) bool -> allowed (B, 1, T, T) bool.

    Query t attends key t' iff t' <= t and t' is real. A query always attends itself, so a
    padded query (whose past is all padding) has a well-defined, finite output; real
    queries never see padded keys.
    """
    T = keys.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=keys.device).tril()  # (T, T)
    eye = torch.eye(T, dtype=torch.bool, device=keys.device)  # (T, T)
    return (causal & (keys[:, None, None, :] | eye)).contiguous()  # (B, 1, T, T)


def init_transformer_weights(module: nn.Module) -> None:
    """GPT-2 initialisation (authors' `_init_weights`): Linear N(0, 0.02), zero bias; LayerNorm (1, 0)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def masked_action_loss(pred: Tensor, target: Tensor, action_mask: Tensor, attn_mask: Tensor) -> Tensor:
    """MSE over the real action dims of the real (non-padded) timesteps.

    pred, target (B, K, A); action_mask (A,), (B, A) or (B, K, A), 1 on a task's real
    action dims; attn_mask (B, K), 1 on real timesteps. The mean is over the selected
    elements, as the authors' `mean((a_hat - a)^2)` after masking.
    """
    B, K, A = pred.shape
    assert target.shape == pred.shape, f"target {tuple(target.shape)} != pred {tuple(pred.shape)}"
    assert attn_mask.shape == (B, K), f"attn_mask {tuple(attn_mask.shape)} != {(B, K)}"
    if action_mask.dim() == 2:
        action_mask = action_mask[:, None, :]  # (B, 1, A)
    assert action_mask.shape[-1] == A, f"action_mask {tuple(action_mask.shape)} has not {A} action dims"
    m = attn_mask[:, :, None].to(pred.dtype) * action_mask.to(pred.dtype)  # (B, K, A)
    sq = (pred - target).square() * m  # padded targets (-10) get weight 0
    return sq.sum() / m.sum().clamp_min(1.0)


def optim_groups(model: nn.Module, weight_decay: float, params: list[nn.Parameter] | None = None) -> list[dict]:
    """nanoGPT-style AdamW groups: decay on weight matrices, none on biases, norms, embeddings.

    Same rule as `m3dt.train.loop.build_optimizer`: a parameter whose name ends in "bias",
    or that belongs to a LayerNorm or an nn.Embedding, or has fewer than 2 dims, is not
    decayed. `params` defaults to all parameters with requires_grad.
    """
    keep = {id(p) for p in (params if params is not None else model.parameters()) if p.requires_grad}
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) not in keep:
                continue
            if name.endswith("bias") or isinstance(module, (nn.LayerNorm, nn.Embedding)) or p.ndim < 2:
                no_decay.append(p)
            else:
                decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
