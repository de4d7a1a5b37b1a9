"""Checkpoints of older code, whose embeddings were `embed_state`, `prompt_embed_return`, ...
(before `TokenEmbedding`), load into today's models and compute the same outputs."""

from __future__ import annotations

import pytest
import torch

from m3dt import checkpoint as ckpt
from m3dt.models import M3DT, MoEConfig, PromptDT, PromptDTConfig, Segment
from m3dt.models.harmodt import HarmoConfig, HarmoDT
from m3dt.models.prompt_dt import LEGACY_EMBED_NAMES

CFG = PromptDTConfig(width=16, n_layer=1, n_head=2, max_ep_len=20, context_len=4, prompt_len=2)
NEW_TO_OLD = {new: old for old, new in LEGACY_EMBED_NAMES.items()}


def legacy(state: dict) -> dict:
    """`state` under the old names: the inverse of `rename_legacy_keys`."""
    out = {}
    for key, v in state.items():
        for new, old in NEW_TO_OLD.items():
            key = key.replace(new + ".", old + ".").replace(new.replace(".", "__") + "__", old + "__")
        out[key] = v
    return out


def batch() -> tuple[Segment, Segment]:
    g = torch.Generator().manual_seed(0)
    x = Segment(torch.randn(3, 4, 39, generator=g), torch.randn(3, 4, 8, generator=g),
                torch.randn(3, 4, 1, generator=g), torch.randint(0, 20, (3, 4), generator=g),
                torch.ones(3, 4, dtype=torch.long))
    return x, Segment(*(z[:1, :2] for z in x))


def models(seed: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    harmo = HarmoDT(CFG, HarmoConfig(), ["a", "b"])
    harmo.set_task("b")
    return {"prompt_dt": PromptDT(CFG), "m3dt": M3DT(CFG, MoEConfig(n_experts=2)), "harmodt": harmo}


@pytest.mark.parametrize("kind", ["prompt_dt", "m3dt", "harmodt"])
def test_a_legacy_state_dict_loads_and_gives_identical_outputs(kind):
    src, dst = models(0)[kind].eval(), models(1)[kind].eval()
    old = legacy(src.state_dict())
    assert any("embed_state" in k for k in old) and not any("input_embed" in k for k in old)
    if kind == "harmodt":
        assert any(k.startswith("masks.") and "embed_state__" in k for k in old)
        dst.set_task("b")
    x, p = batch()
    assert not torch.equal(src(x, p), dst(x, p))
    ckpt.load_state(dst, old, "legacy")
    assert torch.equal(src(x, p), dst(x, p))
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_a_legacy_checkpoint_file_loads(tmp_path):
    src = models(0)["prompt_dt"].eval()
    path = ckpt.save_checkpoint(tmp_path / "old.pt", {"model": legacy(src.state_dict()),
                                                      "meta": {"model_spec": ckpt.spec_of(src)}})
    model, _ = ckpt.load_model(path)
    x, p = batch()
    assert torch.equal(model.eval()(x, p), src(x, p))


def test_rename_legacy_keys_is_idempotent_and_keeps_order():
    state = models(0)["harmodt"].state_dict()
    old = legacy(state)
    once = ckpt.rename_legacy_keys(old)
    assert list(once) == list(state) and all(once[k] is old[legacy({k: 0}).popitem()[0]] for k in once)
    assert ckpt.rename_legacy_keys(once) == once
    assert ckpt.rename_legacy_keys(state) == state
    assert ckpt.rename_legacy_keys({"backbone.prompt_embed_return.bias": 1, "embed_ln.weight": 2}) == {
        "backbone.prompt_embed.rtg.bias": 1, "embed_ln.weight": 2}
    with pytest.raises(ValueError, match="old and its new name"):
        ckpt.rename_legacy_keys({"embed_state.weight": 1, "input_embed.state.weight": 2})
