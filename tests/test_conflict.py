"""Gradient-conflict metrics, per-task gradients and parameter groups (m3dt.analysis.conflict)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from m3dt.analysis.conflict import (
    METRICS,
    conflict_table,
    cosine_to_mean,
    mean_pairwise_cosine,
    negative_pair_fraction,
    pairwise_negative_cosine,
    parameter_groups,
    per_task_gradients,
    sign_disagreement,
    write_conflict_csv,
)

CONFLICTS = (cosine_to_mean, sign_disagreement, pairwise_negative_cosine, negative_pair_fraction)


# --- metrics on hand-made gradients -------------------------------------------------------


def test_identical_gradients_have_no_conflict():
    g = torch.tensor([[1.0, -2.0, 0.0, 3.0]] * 4)
    for metric in CONFLICTS:
        assert metric(g) == pytest.approx(0.0, abs=1e-12), metric.__name__
    assert mean_pairwise_cosine(g) == pytest.approx(1.0)


def test_opposite_gradients_are_maximal():
    g = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 2.0, -0.5]])
    assert cosine_to_mean(g) == 1.0  # ḡ = 0: defined as 1, not NaN
    assert sign_disagreement(g) == 0.5  # every coordinate cancels: half agreement
    assert pairwise_negative_cosine(g) == pytest.approx(1.0)
    assert negative_pair_fraction(g) == 1.0
    assert mean_pairwise_cosine(g) == pytest.approx(-1.0)


def test_three_tasks_cancelling_exactly():
    s = math.sqrt(3) / 2
    g = torch.tensor([[1.0, 0.0], [-0.5, s], [-0.5, -s]], dtype=torch.float64)
    assert cosine_to_mean(g) == 1.0
    assert pairwise_negative_cosine(g) == pytest.approx(0.5)
    assert mean_pairwise_cosine(g) == pytest.approx(-0.5)


def test_orthogonal_gradients():
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert cosine_to_mean(g) == pytest.approx(1 - 1 / math.sqrt(2))
    assert sign_disagreement(g) == 0.0
    assert pairwise_negative_cosine(g) == 0.0
    assert negative_pair_fraction(g) == 0.0
    assert mean_pairwise_cosine(g) == pytest.approx(0.0)


def test_hand_computed_three_task_example():
    # g1=(1,2), g2=(-2,1), g3=(0,-1); ḡ=(-1/3, 2/3), ‖ḡ‖=√5/3.
    g = torch.tensor([[1.0, 2.0], [-2.0, 1.0], [0.0, -1.0]])
    r5 = math.sqrt(5)
    # cos(g_i, ḡ) = 3/5, 4/5, -2/√5
    assert cosine_to_mean(g) == pytest.approx(1 - (0.6 + 0.8 - 2 / r5) / 3)
    # coordinate 0 (ḡ<0): g1 disagrees, g2 agrees, g3 is zero; coordinate 1 (ḡ>0): g3 disagrees
    assert sign_disagreement(g) == pytest.approx(2 / 5)
    # pair cosines: (1,2)=0, (1,3)=-2/√5, (2,3)=-1/√5
    assert pairwise_negative_cosine(g) == pytest.approx((0 + 2 / r5 + 1 / r5) / 3)
    assert negative_pair_fraction(g) == pytest.approx(2 / 3)
    assert mean_pairwise_cosine(g) == pytest.approx(-1 / r5)


def test_cancelled_coordinate_counts_half():
    # coordinate 0: ḡ_0 = 0 with two non-zero entries -> 2 x 1/2; coordinate 1: all agree.
    g = torch.tensor([[1.0, 1.0], [-1.0, 2.0], [0.0, 3.0]])
    assert sign_disagreement(g) == pytest.approx(1 / 5)


def test_zero_norm_tasks_give_no_nan():
    zero = torch.zeros(3, 5)
    for name, metric in METRICS.items():
        value = metric(zero)
        assert math.isfinite(value), name
    assert cosine_to_mean(zero) == 0.0
    # a zero-gradient task is left out: the two identical tasks do not conflict
    g = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    for metric in CONFLICTS:
        assert metric(g) == pytest.approx(0.0, abs=1e-12), metric.__name__
    one = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    assert pairwise_negative_cosine(one) == 0.0 and mean_pairwise_cosine(one) == 1.0


def test_metrics_accept_numpy_and_reject_bad_shapes():
    import numpy as np

    assert cosine_to_mean(np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(1 - 1 / math.sqrt(2))
    with pytest.raises(ValueError, match="matrix"):
        cosine_to_mean(torch.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        sign_disagreement(torch.tensor([[float("nan"), 1.0]]))


# --- a toy model with every kind of module ------------------------------------------------


class Expertish(nn.Module):
    def __init__(self, d: int, n: int):
        super().__init__()
        self.router = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, n))
        self.experts = nn.ModuleList([nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
                                      for _ in range(n)])

    def forward(self, x):
        w = self.router(x).softmax(-1)  # (B, E)
        out = torch.stack([e(x) for e in self.experts], -1)  # (B, d, E)
        return (out * w.unsqueeze(1)).sum(-1)


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = nn.ModuleDict({"c_attn": nn.Linear(d, d), "c_proj": nn.Linear(d, d)})
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Dropout(0.5), nn.Linear(2 * d, d))
        self.moe = Expertish(d, 2)

    def forward(self, x):
        x = x + self.attn["c_proj"](torch.tanh(self.attn["c_attn"](self.ln_1(x))))
        y = self.ln_2(x)
        return y + self.mlp(y) + self.moe(y)


class Toy(nn.Module):
    def __init__(self, d: int = 8):
        super().__init__()
        self.embed_state = nn.Linear(3, d)
        self.embed_timestep = nn.Embedding(10, d)
        self.blocks = nn.ModuleList([Block(d)])
        self.predict_action = nn.Linear(d, 2)

    def forward(self, x, t):
        h = self.embed_state(x) + self.embed_timestep(t)
        for b in self.blocks:
            h = b(h)
        return self.predict_action(h)


def toy_loss(model: nn.Module, batch) -> torch.Tensor:
    x, t, y = batch
    return ((model(x, t) - y) ** 2).mean()


def toy_batches(task: str, n: int = 6, scale: float = 1.0):
    gen = torch.Generator().manual_seed(sum(map(ord, task)))
    return [(torch.randn(5, 3, generator=gen), torch.randint(0, 10, (5,), generator=gen),
             scale * torch.randn(5, 2, generator=gen)) for _ in range(n)]


def manual_average(model, batches, clip):
    """The reference: per batch, zero grads, backward, clip all params, sum; divide by N."""
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for batch in batches:
        model.zero_grad(set_to_none=True)
        toy_loss(model, batch).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        for acc, p in zip(total, params):
            acc += p.grad
    model.zero_grad(set_to_none=True)
    return {id(p): a / len(batches) for p, a in zip(params, total)}


def test_parameter_groups_classify_by_module():
    model = Toy()
    groups = parameter_groups(model)
    assert list(groups) == ["embeddings", "attention", "mlp", "experts", "routers", "other"]
    names = {id(p): n for n, p in model.named_parameters()}
    got = {g: sorted(names[id(p)] for p in ps) for g, ps in groups.items()}
    assert got["embeddings"] == ["embed_state.bias", "embed_state.weight", "embed_timestep.weight"]
    assert all(".attn." in n for n in got["attention"]) and len(got["attention"]) == 4
    assert all(".mlp." in n for n in got["mlp"]) and len(got["mlp"]) == 4
    assert all(".moe.experts." in n for n in got["experts"]) and len(got["experts"]) == 8
    assert all(".moe.router." in n for n in got["routers"]) and len(got["routers"]) == 4
    assert got["other"] == sorted(["blocks.0.ln_1.weight", "blocks.0.ln_1.bias", "blocks.0.ln_2.weight",
                                   "blocks.0.ln_2.bias", "predict_action.weight", "predict_action.bias"])
    assert sum(len(ps) for ps in groups.values()) == len(list(model.parameters()))


def test_stacked_expert_weights_on_an_moe_module():
    class MoE(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Parameter(torch.zeros(4, 8, 16))  # (E, d, 4d)
            self.gate = nn.Linear(8, 4)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.moe = MoE()
            self.moe_router = nn.Linear(8, 4)

    groups = parameter_groups(Net())
    assert groups["experts"][0].shape == (4, 8, 16)
    assert len(groups["routers"]) == 2


def test_model_can_override_groups():
    class Custom(Toy):
        def conflict_groups(self):
            return {"backbone": [self.embed_state.weight], "head": list(self.predict_action.parameters()), "x": []}

    model = Custom()
    groups = parameter_groups(model)
    assert list(groups) == ["backbone", "head"]
    grads = per_task_gradients(model, toy_batches, toy_loss, ["a"], n_batches=2)
    assert grads["a"]["backbone"].numel() == 8 * 3 and grads["a"]["head"].numel() == 2 * 8 + 2


@pytest.mark.parametrize("clip", [0.25, None])
def test_per_task_gradients_match_the_manual_average(clip):
    torch.manual_seed(0)
    model = Toy()
    model.eval()
    tasks = ["task-a", "task-b"]
    grads = per_task_gradients(model, lambda t: toy_batches(t, scale=5.0), toy_loss, tasks, n_batches=4,
                               grad_clip=clip, train_mode=False)  # the manual reference runs in eval mode
    groups = parameter_groups(model)
    for task in tasks:
        ref = manual_average(model, toy_batches(task, scale=5.0)[:4], clip)
        assert list(grads[task]) == list(groups)
        for name, ps in groups.items():
            expected = torch.cat([ref[id(p)].flatten() for p in ps])
            torch.testing.assert_close(grads[task][name], expected, rtol=1e-5, atol=1e-7)
    # the clip matters at this loss scale: the unclipped average is above 0.25
    full = torch.cat([grads["task-a"][n] for n in groups])
    assert (full.norm() <= 0.25 + 1e-6) if clip is not None else (full.norm() > 0.25)


def test_per_task_gradients_make_no_update_and_restore_state():
    torch.manual_seed(1)
    model = Toy()
    model.train()
    for p in model.blocks[0].moe.experts.parameters():
        p.requires_grad_(False)  # frozen experts, as in stage 3
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    model.embed_state.weight.grad = torch.ones_like(model.embed_state.weight)
    grads = per_task_gradients(model, toy_batches, toy_loss, ["a", "b"], n_batches=3)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
        assert p.requires_grad == flags[n], n
    assert torch.equal(model.embed_state.weight.grad, torch.ones_like(model.embed_state.weight))
    assert model.blocks[0].moe.experts[0][0].weight.grad is None
    assert all(m.training for m in model.modules())
    # frozen experts are still measured
    assert grads["a"]["experts"].abs().sum() > 0
    assert grads["a"]["experts"].dtype == torch.float32 and grads["a"]["experts"].device.type == "cpu"


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    torch.manual_seed(2)
    model = Toy()
    a = per_task_gradients(model, toy_batches, toy_loss, ["a"], n_batches=2, train_mode=False)
    b = per_task_gradients(model, toy_batches, toy_loss, ["a"], n_batches=2, train_mode=False)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.manual_seed(3)
    c = per_task_gradients(model, toy_batches, toy_loss, ["a"], n_batches=2, train_mode=True)
    assert not torch.allclose(a["a"]["mlp"], c["a"]["mlp"])


def test_gradients_are_taken_in_train_mode_by_default():
    """As the authors' update_gradient: dropout on unless train_mode=False."""
    torch.manual_seed(2)
    model = Toy().eval()
    seen = []

    def loss(m, batch):
        seen.append(m.training)
        return toy_loss(m, batch)

    torch.manual_seed(3)
    d = per_task_gradients(model, toy_batches, loss, ["a"], n_batches=2)
    assert seen and all(seen) and not model.training  # train mode while measuring, restored after
    torch.manual_seed(3)
    c = per_task_gradients(model, toy_batches, toy_loss, ["a"], n_batches=2, train_mode=True)
    torch.testing.assert_close(d, c, rtol=0, atol=0)


def test_per_task_gradients_needs_enough_batches():
    with pytest.raises(ValueError, match="yielded 6 batches, 10 needed"):
        per_task_gradients(Toy(), toy_batches, toy_loss, ["a"], n_batches=10)


def test_params_argument_selects_groups():
    model = Toy()
    grads = per_task_gradients(model, toy_batches, toy_loss, ["a"], n_batches=1,
                               params={"head": [model.predict_action.weight]})
    assert list(grads["a"]) == ["head"] and grads["a"]["head"].shape == (16,)


# --- tables -------------------------------------------------------------------------------


def test_conflict_table_and_csv(tmp_path):
    grads = {
        "a": {"attention": torch.tensor([1.0, 0.0]), "mlp": torch.tensor([1.0, 2.0, 3.0])},
        "b": {"attention": torch.tensor([-1.0, 0.0]), "mlp": torch.tensor([1.0, 2.0, 3.0])},
    }
    table = conflict_table(grads)
    assert list(table.index) == ["attention", "mlp", "all"] and table.index.name == "group"
    assert list(table.columns) == list(METRICS)
    assert table.loc["attention", "cosine_to_mean"] == 1.0
    assert table.loc["mlp", "pairwise_negative_cosine"] == 0.0
    # all = concatenation: (1,0,1,2,3) vs (-1,0,1,2,3): cos = 13/15
    assert table.loc["all", "mean_pairwise_cosine"] == pytest.approx(13 / 15)

    path = write_conflict_csv(tmp_path / "out" / "conflict.csv", grads, metrics=["cosine_to_mean"],
                              meta={"step": 400000, "n_tasks": 2})
    back = pd.read_csv(path)
    assert list(back.columns) == ["step", "n_tasks", "group", "cosine_to_mean"]
    assert list(back["group"]) == ["attention", "mlp", "all"] and (back["step"] == 400000).all()
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temporary left behind

    with pytest.raises(KeyError, match="unknown conflict metrics"):
        conflict_table(grads, metrics=["nope"])
