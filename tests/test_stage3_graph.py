"""Stage 3 (routers train, backbone and experts frozen) builds no autograd graph it does not
need: nothing before the first router's input records a graph, the first layer's experts
run without one, and no frozen parameter gets a gradient."""

import torch

from m3dt.models import M3DT, MoEConfig, PromptDTConfig


def test_frozen_modules_build_no_graph_before_the_first_router():
    cfg = PromptDTConfig(width=32, n_layer=2, n_head=4, context_len=4, prompt_len=2)
    model = M3DT(cfg, MoEConfig(n_experts=3)).train()
    trainable = model.set_trainable(backbone=False, experts=False, routers=True)
    seen = {}

    def keep(name):
        return lambda mod, inp, out: seen.setdefault(name, out)

    model.backbone.blocks[0].ln_2.register_forward_hook(keep("y0"))  # the first router's input
    model.moes[0].register_forward_hook(keep("moe0"))
    model.backbone.blocks[1].ln_1.register_forward_hook(keep("ln1_1"))
    B = 3
    x = (torch.randn(B, 4, 39), torch.randn(B, 4, 8), torch.randn(B, 4, 1), torch.arange(4).expand(B, -1),
         torch.ones(B, 4))
    p = tuple(z[:1, :2] for z in x)
    model(x, prompt=p).square().mean().backward()
    assert seen["y0"].grad_fn is None, "the frozen forward before the first router recorded a graph"
    assert seen["moe0"].requires_grad, "the first layer's MoE output must carry the router's gradient"
    assert seen["ln1_1"].requires_grad, "later layers must pass the routers' gradients back"
    frozen = [n for n, q in model.named_parameters() if q.grad is not None and not q.requires_grad]
    assert not frozen, f"frozen parameters got gradients: {frozen[:3]}"
    assert all(q.grad is not None for q in trainable), "every router parameter gets a gradient"
