"""The three stages and the baselines end to end on tiny synthetic data (seconds)."""

import numpy as np
import pytest
import torch

from m3dt import tasks
from m3dt.__main__ import main
from m3dt.analysis.grouping import random_groups
from m3dt.checkpoint import load_checkpoint
from m3dt.groups import write_groups_json
from m3dt.config import ConfigError, TrainConfig
from m3dt.data.store import write_task_data
from m3dt.policy import load_policy
from m3dt.train import stages
from m3dt.train.data import load_sampler

TASKS = ["reach-v2", "cartpole-balance", "cheetah-vel-0", "ant-dir-0"]
TINY = {
    "model": {"width": 32, "n_layer": 1, "n_head": 2, "context_len": 4, "prompt_len": 2},
    "moe": {"n_experts": 2},
    "sampler": {"batch_size": 4},
    "optim": {"warmup_steps": 2},
    "loop": {"steps": 4, "log_every": 2, "checkpoint_every": 2, "device": "cpu"},
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for t in TASKS:
        spec = tasks.get(t)
        eps = [{"observations": rng.normal(size=(T, spec.obs_dim)).astype(np.float32),
                "actions": rng.uniform(-1, 1, (T, spec.action_dim)).astype(np.float32),
                "rewards": rng.uniform(0, 1, T).astype(np.float32),
                "terminals": np.arange(T) == T - 1} for T in (12, 9, 15, 10, 8)]
        write_task_data(d / f"{t}.h5", t, eps)
    return d


def cfg(**sections):
    d = {k: dict(v) for k, v in TINY.items()}
    for k, v in sections.items():
        d[k] = {**d.get(k, {}), **v}
    return TrainConfig.from_dict(d)


def params(model, prefix):
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def pipeline(data_dir, tmp_path_factory):
    """backbone -> random groups -> 2 experts -> assemble -> router."""
    root = tmp_path_factory.mktemp("runs")
    c = cfg()
    bb = stages.run_backbone(c, TASKS, data_dir, root / "backbone").final_checkpoint
    groups = root / "groups.json"
    write_groups_json(groups, random_groups(TASKS, 2, seed=0), {"method": "random", "seed": 0})
    experts = [stages.run_expert(c, bb, groups, e, data_dir, root / f"expert{e}").final_checkpoint for e in range(2)]
    init = stages.assemble(bb, experts, root / "m3dt_init.pt", c)
    final = stages.run_router(c, init, TASKS, data_dir, root / "router").final_checkpoint
    return {"root": root, "backbone": bb, "groups": groups, "experts": experts, "init": init, "final": final}


def test_three_stages_freeze_what_they_should(pipeline):
    backbone = load_policy(pipeline["backbone"]).model
    init = load_policy(pipeline["init"]).model
    final = load_policy(pipeline["final"]).model
    for k, v in backbone.state_dict().items():  # stage 2 and 3 leave the backbone alone
        assert torch.equal(init.backbone.state_dict()[k], v), k
        assert torch.equal(final.backbone.state_dict()[k], v), k
    for e, path in enumerate(pipeline["experts"]):  # each expert lands in its slot
        ck = load_checkpoint(path)
        assert ck["meta"]["expert"] == e and set(ck["meta"]["expert_tasks"]) <= set(TASKS)
        for k, v in ck["model"].items():
            assert torch.equal(init.state_dict()[k][e], v[0]), k
            assert torch.equal(final.state_dict()[k][e], v[0]), k  # frozen in stage 3
    r_init, r_final = params(init, "moes.0.router"), params(final, "moes.0.router")
    assert any(not torch.equal(r_init[k], r_final[k]) for k in r_init)  # routers trained


def test_backbone_is_gpt2_and_m3dt_switches_to_the_authors_block(pipeline):
    """Stage 1 trains the GPT-2 block (out = h + FFN(LN2 h)); stages 2-3 use y + FFN(y) + MoE(y)."""
    assert load_policy(pipeline["backbone"]).spec["dt"]["ffn_residual"] == "stream"
    for stage in ("init", "final"):
        assert load_policy(pipeline[stage]).spec["dt"]["ffn_residual"] == "normed", stage
    pol = load_policy(pipeline["final"])  # prompt returns travel with the checkpoint (evaluation's "best" prompt)
    assert set(pol.prompt_returns) == set(TASKS) and all(len(r) == 2 for r in pol.prompt_returns.values())


def test_policy_acts_on_every_task(pipeline):
    pol = load_policy(pipeline["final"])
    assert pol.tasks == TASKS and pol.spec["kind"] == "m3dt" and pol.model.n_experts == 2
    for t in TASKS:
        mean, std = pol.stats[t]
        assert mean.shape == (tasks.get(t).obs_dim,) and (std > 0).all()
        p = pol.prompt(t)
        assert p[0].shape == (1, 2, 39)
        a = pol.model.get_action(torch.zeros(3, 1, 39), torch.zeros(3, 1, 8), torch.ones(3, 1, 1),
                                 torch.zeros(3, 1, dtype=torch.long), p)
        assert a.shape == (3, 8) and torch.isfinite(a).all()
    with pytest.raises(KeyError, match="walker-walk"):
        pol.prompt("walker-walk")


def test_assemble_checks_expert_order(pipeline, tmp_path):
    with pytest.raises(ValueError, match="expert 0"):
        stages.assemble(pipeline["backbone"], pipeline["experts"][::-1], tmp_path / "x.pt", cfg())
    assert not (tmp_path / "x.pt").exists()


def test_number_of_experts_comes_from_the_groups_file(pipeline, tmp_path):
    with pytest.raises(ValueError, match="2-group file"):  # one expert checkpoint of a two-group file
        stages.run("assemble", cfg(), tmp_path / "x.pt", backbone=pipeline["backbone"], experts=pipeline["experts"][:1])
    assert not (tmp_path / "x.pt").exists()


def test_stage3_takes_every_moe_setting_but_the_expert_count_from_the_config(pipeline, data_dir, tmp_path):
    moe = {"router_hidden_mult": 2, "topk_eval_noise": False, "expert_init_std": 0.01, "n_experts": 7}
    run = stages.run("router", cfg(moe=moe), tmp_path, assembled=pipeline["init"], tasks=TASKS, data_dir=data_dir)
    spec = load_policy(run.final_checkpoint).spec["moe"]
    assert spec["n_experts"] == 2  # the assembled checkpoint's, not the config's 7
    assert {k: spec[k] for k in moe if k != "n_experts"} == {k: v for k, v in moe.items() if k != "n_experts"}


def test_dispatcher_names_missing_inputs(tmp_path):
    with pytest.raises(ValueError, match=r"stage 'router' needs \['assembled'"):
        stages.run("router", cfg(), tmp_path, tasks=TASKS, data_dir=tmp_path)


def test_grouped_stage2_trains_only_experts(pipeline, data_dir, tmp_path):
    run = stages.run_experts_grouped(cfg(), pipeline["backbone"], pipeline["groups"], data_dir, tmp_path / "g")
    pol = load_policy(run.final_checkpoint)
    backbone = load_policy(pipeline["backbone"]).model
    for k, v in backbone.state_dict().items():
        assert torch.equal(pol.model.backbone.state_dict()[k], v), k
    assert pol.model.n_experts == 2 and pol.spec["moe"]["n_experts"] == 2


def test_router_ablations(pipeline, data_dir, tmp_path):
    topk = stages.run_router(cfg(moe={"router": "topk", "top_k": 1}), pipeline["init"], TASKS, data_dir,
                             tmp_path / "topk")
    assert load_policy(topk.final_checkpoint).spec["moe"]["router"] == "topk"
    assert load_policy(topk.final_checkpoint).model.moes[0].router.eval_noise  # the authors' noise at evaluation
    unfrozen = stages.run_router(cfg(), pipeline["init"], TASKS, data_dir, tmp_path / "unfrozen", train_experts=True)
    a, b = load_policy(pipeline["init"]).model, load_policy(unfrozen.final_checkpoint).model
    ka = params(a, "moes.0.experts")
    kb = params(b, "moes.0.experts")
    assert any(not torch.equal(ka[k], kb[k]) for k in ka)


@pytest.mark.parametrize("kind", ["mtdt", "e2e_moe"])
def test_baselines(kind, data_dir, tmp_path):
    c = cfg()
    run = (stages.run_e2e_moe(c, TASKS[:2], data_dir, tmp_path) if kind == "e2e_moe"
           else stages.run_backbone(c, TASKS[:2], data_dir, tmp_path, kind="mtdt"))
    pol = load_policy(run.final_checkpoint)
    assert pol.spec["kind"] == ("m3dt" if kind == "e2e_moe" else "mtdt")
    assert (pol.prompt(TASKS[0]) is None) == (kind == "mtdt")


def test_same_seed_same_backbone(data_dir, tmp_path):
    a = stages.run_backbone(cfg(), TASKS[:2], data_dir, tmp_path / "a").final_checkpoint
    b = stages.run_backbone(cfg(), TASKS[:2], data_dir, tmp_path / "b").final_checkpoint
    sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_loop_seed_also_seeds_the_sampler(data_dir):
    """Two training seeds draw different batches, unless sampler.seed is set explicitly."""
    assert cfg(loop={"seed": 3}).sampler.seed == 3
    assert cfg(loop={"seed": 3}, sampler={"seed": 7}).sampler.seed == 7

    def first_batch(c):
        return load_sampler(data_dir, TASKS, c).next(1)[1].states

    assert not torch.equal(first_batch(cfg(loop={"seed": 0})), first_batch(cfg(loop={"seed": 1})))
    assert torch.equal(first_batch(cfg(loop={"seed": 0}, sampler={"seed": 5})),
                       first_batch(cfg(loop={"seed": 1}, sampler={"seed": 5})))


def test_cli_backbone_and_config_errors(data_dir, tmp_path):
    sets = ["model.width=32", "model.n_layer=1", "model.n_head=2", "model.context_len=4", "model.prompt_len=2",
            "sampler.batch_size=4", "loop.steps=2", "loop.device=cpu"]
    assert main(["train", "--stage", "prompt-dt", "--tasks", "reach-v2",
                 "--data-dir", str(data_dir), "--out", str(tmp_path / "r"), "--set", *sets]) == 0
    assert (tmp_path / "r" / "checkpoints" / "final.pt").exists()
    with pytest.raises(SystemExit, match="train.model.widht"):
        main(["train", "--stage", "backbone", "--tasks", "reach-v2", "--data-dir", str(data_dir),
              "--out", str(tmp_path / "x"), "--set", "model.widht=3"])
    with pytest.raises(ConfigError, match="context_len"):
        TrainConfig.from_dict({"model": {"context_len": 4}, "sampler": {"K": 5}})
    with pytest.raises(FileNotFoundError, match="walker-walk"):
        stages.run_backbone(cfg(), ["walker-walk"], data_dir, tmp_path / "y")


def test_conflict_and_gradient_grouping_on_checkpoints(pipeline, data_dir, tmp_path):
    import json

    import pandas as pd

    out = tmp_path / "c.csv"
    assert main(["conflict", "--checkpoint", str(pipeline["final"]), "--tasks", *TASKS, "--data-dir", str(data_dir),
                 "--n-batches", "2", "--out", str(out), "--meta", "step=4", "model=m3dt"]) == 0
    df = pd.read_csv(out)
    assert {"embeddings", "attention", "mlp", "experts", "routers", "all"} <= set(df["group"])
    assert (df["step"] == 4).all() and df["cosine_to_mean"].between(0, 2).all()
    g = tmp_path / "g.json"
    assert main(["group", "--tasks", *TASKS, "--method", "gradient", "--experts", "2", "--checkpoint",
                 str(pipeline["backbone"]), "--data-dir", str(data_dir), "--n-batches", "2", "--n-init", "2",
                 "--n-repeats", "2", "--out", str(g)]) == 0
    doc = json.loads(g.read_text())
    assert sorted(t for grp in doc["groups"] for t in grp) == sorted(TASKS)
    assert doc["kmeans"]["reduce"] == "none"
    g2 = tmp_path / "g2.json"  # the exact PCA reduction: the same partition
    assert main(["group", "--tasks", *TASKS, "--method", "gradient", "--experts", "2", "--checkpoint",
                 str(pipeline["backbone"]), "--data-dir", str(data_dir), "--n-batches", "2", "--n-init", "2",
                 "--n-repeats", "2", "--reduce", "pca", "--out", str(g2)]) == 0
    doc2 = json.loads(g2.read_text())
    assert doc2["kmeans"]["reduce"] == "pca"
    assert sorted(map(sorted, doc2["groups"])) == sorted(map(sorted, doc["groups"]))


def test_no_grouping_expert_sees_all_tasks(pipeline, data_dir, tmp_path):
    run = stages.run_expert(cfg(), pipeline["backbone"], None, 1, data_dir, tmp_path, all_tasks=TASKS)
    assert load_checkpoint(run.final_checkpoint)["meta"]["expert_tasks"] == TASKS


def test_harmodt_baseline_through_stages(data_dir, tmp_path):
    run = stages.run_harmodt(cfg(harmo={"mask_interval": 2}), TASKS[:2], data_dir, tmp_path)
    pol = load_policy(run.final_checkpoint)
    assert pol.spec["kind"] == "harmodt" and pol.tasks == TASKS[:2]
    pol.select_task(TASKS[1])
    a = pol.model.get_action(torch.zeros(1, 1, 39), torch.zeros(1, 1, 8), torch.ones(1, 1, 1),
                             torch.zeros(1, 1, dtype=torch.long), pol.prompt(TASKS[1]))
    assert a.shape == (1, 8)
