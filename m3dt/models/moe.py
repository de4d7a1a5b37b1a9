"""The mixture of experts of one M3DT layer: stacked experts and a router (paper.md §1).

An expert is an FFN of the backbone's shape (width -> ffn_mult * width -> width, ReLU,
dropout on the output). The E experts of a layer are held as stacked weight tensors, so an
expert is an index:

    fc_weight (E, C, H)   fc_bias (E, H)   proj_weight (E, H, C)   proj_bias (E, C)

with H = ffn_mult * C and expert_e(x) = dropout(relu(x @ fc_weight[e] + fc_bias[e]) @
proj_weight[e] + proj_bias[e]). Stacking lets stage 2 train all experts in one process
(`ExpertBank.grouped`), and lets a GPU apply all of them with one batched matmul.

How the experts are applied (`mode`), all equal to ~1e-6 in fp32:
- "loop": one pair of matmuls per expert over the stacked weights (fastest on CPU, see
  `benchmarks/bench_moe.py`);
- "bmm": one batched matmul over the expert dimension (for GPU);
- "einsum": the same contraction written with einsum;
- "auto": "loop" on CPU, "bmm" on CUDA.

Routers: `DenseRouter` (the paper: a 5-layer ReLU MLP and a softmax over all experts) and
`NoisyTopKRouter` (the top-k ablation). With top-k gates, "loop" computes each expert only
on the tokens that selected it; "bmm"/"einsum" compute every expert on every token and
weight the unselected ones by exactly 0 (same result, simpler batched kernels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Mode = Literal["auto", "loop", "bmm", "einsum"]
MODES = ("auto", "loop", "bmm", "einsum")


@dataclass(frozen=True)
class MoEConfig:
    """The experts and routers added to every layer of the backbone."""

    n_experts: int = 8  # E
    router: Literal["dense", "topk"] = "dense"
    top_k: int = 4  # experts kept per token by the top-k router
    router_hidden_mult: int = 4  # router widths: C -> mC -> mC -> mC -> mC/2 -> E
    topk_eval_noise: bool = True  # top-k gate noise at evaluation too, as the authors' router always adds it
    mode: Mode = "auto"  # how experts are applied, see the module docstring
    expert_init_std: float = 0.02  # experts start fresh, N(0, 0.02), zero bias (authors)

    def __post_init__(self) -> None:
        assert self.n_experts >= 1, f"n_experts must be >= 1, got {self.n_experts}"
        assert self.router in ("dense", "topk"), f"unknown router {self.router!r}"
        if self.router == "topk":
            assert 1 <= self.top_k <= self.n_experts, f"top_k {self.top_k} not in [1, n_experts={self.n_experts}]"
        assert self.router_hidden_mult >= 1, f"router_hidden_mult must be >= 1, got {self.router_hidden_mult}"
        assert self.mode in MODES, f"unknown mode {self.mode!r}, one of {MODES}"


def resolve_mode(mode: Mode, device: torch.device) -> str:
    assert mode in MODES, f"unknown mode {mode!r}, one of {MODES}"
    if mode == "auto":
        return "bmm" if device.type == "cuda" else "loop"
    return mode


class ExpertBank(nn.Module):
    """The E expert FFNs of one layer, as stacked weight tensors."""

    def __init__(self, n_experts: int, width: int, hidden: int, dropout: float = 0.0, init_std: float = 0.02):
        super().__init__()
        E, C, H = n_experts, width, hidden
        self.n_experts, self.width, self.hidden = E, C, H
        self.fc_weight = nn.Parameter(torch.empty(E, C, H))
        self.fc_bias = nn.Parameter(torch.zeros(E, H))
        self.proj_weight = nn.Parameter(torch.empty(E, H, C))
        self.proj_bias = nn.Parameter(torch.zeros(E, C))
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.fc_weight, std=init_std)
        nn.init.normal_(self.proj_weight, std=init_std)

    def expert(self, x: Tensor, e: int) -> Tensor:
        """Expert e alone on x (N, C) -> (N, C)."""
        return self._ffn(x, self.fc_weight[e], self.fc_bias[e], self.proj_weight[e], self.proj_bias[e])

    def _ffn(self, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        h = F.relu(torch.addmm(b1, x, w1))  # (N, H)
        return self.dropout(torch.addmm(b2, h, w2))  # (N, C)

    def _unbound(self) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Per-expert views (w1, b1, w2, b2). `unbind` (not E separate `[e]` selects) makes
        the backward write each stacked gradient once, instead of E full-size zero tensors."""
        return list(zip(*(p.unbind(0) for p in (self.fc_weight, self.fc_bias, self.proj_weight, self.proj_bias))))

    def _all(self, x: Tensor, mode: str) -> Tensor:
        """Every expert on its own slice: x (E, N, C) -> (E, N, C)."""
        if mode == "loop":
            return torch.stack([self._ffn(x[e], *w) for e, w in enumerate(self._unbound())])
        if mode == "bmm":
            h = F.relu(torch.baddbmm(self.fc_bias[:, None], x, self.fc_weight))  # (E, N, H)
            y = torch.baddbmm(self.proj_bias[:, None], h, self.proj_weight)  # (E, N, C)
        else:  # einsum
            h = F.relu(torch.einsum("enc,ech->enh", x, self.fc_weight) + self.fc_bias[:, None])  # (E, N, H)
            y = torch.einsum("enh,ehc->enc", h, self.proj_weight) + self.proj_bias[:, None]  # (E, N, C)
        return self.dropout(y)

    def mix(self, x: Tensor, gates: Tensor, mode: Mode = "auto") -> Tensor:
        """Σ_e gates_e · expert_e(x): x (..., C), gates (..., E) -> (..., C).

        In "loop" mode an expert is computed only on the tokens whose gate for it is
        non-zero (all tokens for a dense router, the selected ones for a top-k router) and
        skipped when none are.
        """
        mode = resolve_mode(mode, x.device)
        E, C = self.n_experts, self.width
        assert x.shape[-1] == C and gates.shape == (*x.shape[:-1], E), f"x {tuple(x.shape)}, gates {tuple(gates.shape)}"
        x2, g = x.reshape(-1, C), gates.reshape(-1, E).to(x.dtype)  # (N, C), (N, E)
        if mode != "loop":
            y = self._all(x2.unsqueeze(0).expand(E, -1, -1), mode)  # (E, N, C)
            return torch.einsum("ne,enc->nc", g, y).view_as(x)
        out = torch.zeros_like(x2)  # (N, C)
        used = g != 0  # (N, E)
        n_used = used.sum(0).tolist()  # tokens per expert
        N = x2.shape[0]
        for e, w in enumerate(self._unbound()):
            if n_used[e] == N:
                out = out.addcmul(g[:, e : e + 1], self._ffn(x2, *w))
            elif n_used[e] > 0:
                rows = used[:, e].nonzero().squeeze(1)  # (n_e,)
                ye = self._ffn(x2.index_select(0, rows), *w)  # (n_e, C)
                out = out.index_add(0, rows, ye * g.index_select(0, rows)[:, e : e + 1])
        return out.view_as(x)

    def single(self, x: Tensor, e: int) -> Tensor:
        """Expert e alone, weight 1: x (..., C) -> (..., C)."""
        assert 0 <= e < self.n_experts, f"expert {e} not in [0, {self.n_experts})"
        return self.expert(x.reshape(-1, self.width), e).view_as(x)

    def grouped(self, x: Tensor, mode: Mode = "auto") -> Tensor:
        """Expert e on slice e: x (E, ..., C) -> (E, ..., C) (all experts trained at once)."""
        assert x.shape[0] == self.n_experts and x.shape[-1] == self.width, f"x {tuple(x.shape)}"
        return self._all(x.reshape(self.n_experts, -1, self.width), resolve_mode(mode, x.device)).view_as(x)

    def per_sample(self, x: Tensor, idx: Tensor, mode: Mode = "auto") -> Tensor:
        """Expert idx[b] on sample b: x (B, ..., C), idx (B,) long -> (B, ..., C).

        "loop" loops over the distinct experts in idx; "bmm"/"einsum" gather each sample's
        expert weights and run one batched matmul.
        """
        B, C = x.shape[0], self.width
        assert idx.shape == (B,) and x.shape[-1] == C, f"x {tuple(x.shape)}, idx {tuple(idx.shape)}"
        x3 = x.reshape(B, -1, C)  # (B, T, C)
        if resolve_mode(mode, x.device) == "loop":
            out = torch.zeros_like(x3)
            ws = self._unbound()
            for e in idx.unique().tolist():
                rows = (idx == e).nonzero().squeeze(1)
                ye = self._ffn(x3.index_select(0, rows).reshape(-1, C), *ws[e])  # (n_e * T, C)
                out = out.index_copy(0, rows, ye.view(len(rows), -1, C))
            return out.view_as(x)
        h = F.relu(torch.baddbmm(self.fc_bias[idx][:, None], x3, self.fc_weight[idx]))  # (B, T, H)
        y = torch.baddbmm(self.proj_bias[idx][:, None], h, self.proj_weight[idx])  # (B, T, C)
        return self.dropout(y).view_as(x)

    @torch.no_grad()
    def copy_from_mlp(self, e: int, mlp: nn.Module) -> None:
        """Load expert e from a backbone FFN (an `MLP` with Linear `c_fc` and `c_proj`)."""
        self.fc_weight[e].copy_(mlp.c_fc.weight.T)
        self.fc_bias[e].copy_(mlp.c_fc.bias)
        self.proj_weight[e].copy_(mlp.c_proj.weight.T)
        self.proj_bias[e].copy_(mlp.c_proj.bias)

    def extra_repr(self) -> str:
        return f"n_experts={self.n_experts}, width={self.width}, hidden={self.hidden}"


def router_mlp(width: int, n_experts: int, hidden_mult: int = 4) -> nn.Sequential:
    """The authors' 5-layer ReLU router trunk: C -> mC -> mC -> mC -> mC/2 -> E (logits)."""
    dims = [width, hidden_mult * width, hidden_mult * width, hidden_mult * width, hidden_mult * width // 2, n_experts]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no ReLU on the logits


class DenseRouter(nn.Module):
    """Token-level gates softmax(MLP(y)) over all E experts (the paper's router)."""

    def __init__(self, width: int, n_experts: int, hidden_mult: int = 4):
        super().__init__()
        self.net = router_mlp(width, n_experts, hidden_mult)

    def forward(self, y: Tensor) -> Tensor:
        return F.softmax(self.net(y), dim=-1)  # (..., E)


class NoisyTopKRouter(nn.Module):
    """Noisy top-k gates (the ablation): softmax over the k largest noisy logits, 0 elsewhere.

    logits = MLP(y) + N(0, 1) · softplus(noise_linear(y)); the noise is drawn in training
    and, with `eval_noise` (default, as the authors' router, which always adds it), at
    evaluation too (`eval_noise=False`: deterministic gates in eval mode).
    """

    def __init__(self, width: int, n_experts: int, top_k: int, hidden_mult: int = 4, eval_noise: bool = True):
        super().__init__()
        assert 1 <= top_k <= n_experts
        self.top_k, self.eval_noise = top_k, eval_noise
        self.net = router_mlp(width, n_experts, hidden_mult)
        self.noise_linear = nn.Linear(width, n_experts)

    def forward(self, y: Tensor) -> Tensor:
        logits = self.net(y)  # (..., E)
        if self.training or self.eval_noise:
            logits = logits + torch.randn_like(logits) * F.softplus(self.noise_linear(y))
        top, idx = logits.topk(self.top_k, dim=-1)  # (..., k)
        sparse = torch.full_like(logits, float("-inf")).scatter(-1, idx, top)  # (..., E)
        return F.softmax(sparse, dim=-1)  # exactly k non-zero gates per token


class MoE(nn.Module):
    """The experts and the router of one layer: y (B, T, C) -> (B, T, C)."""

    def __init__(self, cfg: MoEConfig, width: int, ffn_mult: int = 4, dropout: float = 0.1):
        super().__init__()
        self.cfg = cfg
        self.experts = ExpertBank(cfg.n_experts, width, ffn_mult * width, dropout, cfg.expert_init_std)
        if cfg.router == "dense":
            self.router: nn.Module = DenseRouter(width, cfg.n_experts, cfg.router_hidden_mult)
        else:
            self.router = NoisyTopKRouter(width, cfg.n_experts, cfg.top_k, cfg.router_hidden_mult, cfg.topk_eval_noise)

    def forward(self, y: Tensor, routing: str = "router", expert: int | Tensor | None = None) -> Tensor:
        """routing "router": the router's gates; "single": expert `expert` (an int, or a (B,)
        long tensor of one expert per sample) with weight 1; "grouped": the batch is E equal
        groups of samples, group e goes to expert e."""
        if routing == "router":
            return self.experts.mix(y, self.router(y), self.cfg.mode)
        if routing == "single":
            if isinstance(expert, Tensor):
                return self.experts.per_sample(y, expert, self.cfg.mode)
            return self.experts.single(y, int(expert))
        if routing == "grouped":
            E, B = self.cfg.n_experts, y.shape[0]
            assert B % E == 0, f"grouped routing needs a batch divisible by n_experts={E}, got {B}"
            return self.experts.grouped(y.view(E, B // E, *y.shape[1:]), self.cfg.mode).view_as(y)
        raise ValueError(f"unknown routing {routing!r}")
