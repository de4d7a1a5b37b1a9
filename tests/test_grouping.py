"""Task grouping: random and gradient k-means, groups JSON, `python -m m3dt group`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from m3dt import tasks as registry
from m3dt.__main__ import main
from m3dt.analysis.grouping import (
    conflict_features,
    gradient_groups,
    kmeans_restarts,
    random_groups,
)
from m3dt.groups import read_groups_json, write_groups_json

TASKS = [f"task-{i:02d}" for i in range(13)]


def as_partition(groups):
    return {frozenset(g) for g in groups}


def covers_once(groups, tasks):
    flat = [t for g in groups for t in g]
    return sorted(flat) == sorted(tasks) and len(flat) == len(set(flat))


# --- random -------------------------------------------------------------------------------


def test_random_groups_are_balanced_and_cover_every_task():
    groups = random_groups(TASKS, 4, seed=0)
    assert len(groups) == 4 and covers_once(groups, TASKS)
    assert sorted(len(g) for g in groups) == [3, 3, 3, 4]
    for e in range(1, len(TASKS) + 1):
        sizes = [len(g) for g in random_groups(TASKS, e, seed=1)]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(TASKS)


def test_random_groups_are_deterministic_per_seed():
    assert random_groups(TASKS, 4, seed=3) == random_groups(TASKS, 4, seed=3)
    assert as_partition(random_groups(TASKS, 4, seed=3)) != as_partition(random_groups(TASKS, 4, seed=4))


@pytest.mark.parametrize("e", [0, -1, 14])
def test_bad_group_counts_raise(e):
    with pytest.raises(ValueError, match=rf"E={e}.*T=13"):
        random_groups(TASKS, e, seed=0)
    grads = {t: torch.randn(5) for t in TASKS}
    with pytest.raises(ValueError, match=rf"E={e}.*T=13"):
        gradient_groups(grads, e, seed=0, n_repeats=1)


def test_duplicate_tasks_raise():
    with pytest.raises(ValueError, match="more than once"):
        random_groups(["a", "b", "a"], 2, seed=0)


# --- gradient -----------------------------------------------------------------------------


def clustered_gradients(seed: int = 0, n_zero_cols: int = 7):
    """12 tasks in 3 clusters: cluster c pushes hard on its own block of 10 coordinates."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(12)  # interleave the clusters in task order
    truth: list[list[str]] = [[], [], []]
    grads = {}
    for k in order:
        c = int(k) % 3
        g = rng.normal(0, 0.05, size=30 + n_zero_cols)
        g[10 * c:10 * c + 10] += 1.0
        g[30:] = 0.0
        name = f"task-{int(k):02d}"
        grads[name] = torch.tensor(g, dtype=torch.float32)
        truth[c].append(name)
    return grads, truth


def test_gradient_groups_recover_obvious_clusters():
    grads, truth = clustered_gradients()
    groups, stats = gradient_groups(grads, 3, seed=0, n_init=10, n_repeats=5)
    assert covers_once(groups, list(grads))
    assert as_partition(groups) == as_partition(truth)
    assert stats["n_dropped"] == 7 and stats["n_coordinates"] == 30
    assert stats["size_variance"] == 0.0 and stats["inertia"] > 0


def test_gradient_groups_paper_defaults_are_deterministic():
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(gradient_groups).parameters.items()}
    assert defaults["n_init"] == 40 and defaults["n_repeats"] == 40 and defaults["criterion"] == "distance"
    grads, truth = clustered_gradients(seed=1)
    a, sa = gradient_groups(grads, 3, seed=5, n_repeats=4)  # 40 restarts each (1600 fits take ~15 s here)
    b, sb = gradient_groups(grads, 3, seed=5, n_repeats=4)
    assert a == b and sa == sb and sa["n_init"] == 40
    assert as_partition(a) == as_partition(truth)


def test_pca_reduction_gives_the_same_partition():
    grads, _ = clustered_gradients(seed=2)
    rng = np.random.default_rng(0)
    noisy = {t: g + torch.tensor(rng.normal(0, 0.4, g.shape), dtype=torch.float32) for t, g in grads.items()}
    full, _ = gradient_groups(noisy, 4, seed=0, n_init=5, n_repeats=3)
    reduced, stats = gradient_groups(noisy, 4, seed=0, n_init=5, n_repeats=3, reduce="pca")
    assert as_partition(full) == as_partition(reduced) and stats["reduce"] == "pca"


def test_gradient_groups_accept_per_group_gradients():
    grads, truth = clustered_gradients()
    # the clusters live in "mlp"; "attention" is pure noise
    rng = np.random.default_rng(1)
    nested = {t: {"attention": torch.tensor(rng.normal(size=6), dtype=torch.float32), "mlp": g}
              for t, g in grads.items()}
    groups, stats = gradient_groups(nested, 3, seed=0, n_init=10, n_repeats=3, param_groups=["mlp"])
    assert as_partition(groups) == as_partition(truth) and stats["n_coordinates"] == 30
    with pytest.raises(KeyError, match="no parameter group"):
        gradient_groups(nested, 3, seed=0, param_groups=["experts"])


# Six points whose two k-means fixed points disagree: {0, 4} | {1, 2, 3, 5} has the least
# squared distance sum (inertia 25.25, distance 12.00), {4} | the rest the least unsquared
# one (inertia 29.6, distance 11.36).
CRAFTED = np.array([[-4, 2], [2, 4], [-2, 5], [-1, 5], [-1, -2], [1, 3]], dtype=np.float64)
BY_INERTIA, BY_DISTANCE = {frozenset({0, 4}), frozenset({1, 2, 3, 5})}, {frozenset({4}), frozenset({0, 1, 2, 3, 5})}


def _partition(labels):
    return {frozenset(np.flatnonzero(labels == k).tolist()) for k in np.unique(labels)}


def test_best_restart_is_the_least_unsquared_distance_sum():
    """The authors keep the restart with the least sum of unsquared distances, not sklearn's inertia."""
    labels, dist, inertia = kmeans_restarts(CRAFTED, 2, n_init=40, seed=0)
    assert _partition(labels) == BY_DISTANCE
    assert dist == pytest.approx(11.362026, abs=1e-5) and inertia == pytest.approx(29.6)
    labels, dist, inertia = kmeans_restarts(CRAFTED, 2, n_init=40, seed=0, criterion="inertia")
    assert _partition(labels) == BY_INERTIA
    assert dist == pytest.approx(12.002346, abs=1e-5) and inertia == pytest.approx(25.25)
    with pytest.raises(ValueError, match="criterion"):
        kmeans_restarts(CRAFTED, 2, n_init=1, seed=0, criterion="squared")


def test_gradient_groups_choose_restarts_by_unsquared_distance():
    # gradients whose features x_i = mean(g) ⊙ g_i are CRAFTED up to a translation (which changes
    # no k-means partition): g_i = f_i / sqrt(mean f) gives x_i = f_i
    feats = CRAFTED - CRAFTED.mean(0) + 3.0
    g = {f"t{i}": torch.tensor(f / np.sqrt(feats.mean(0))) for i, f in enumerate(feats)}
    torch.testing.assert_close(conflict_features(torch.stack(list(g.values())))[0].double(), torch.tensor(feats),
                               rtol=1e-6, atol=1e-6)

    def partition(groups):
        return {frozenset(int(t[1:]) for t in grp) for grp in groups}

    # one repeat, so that the size-variance choice between repeats does not interfere
    got, stats = gradient_groups(g, 2, seed=0, n_init=40, n_repeats=1)
    assert partition(got) == BY_DISTANCE and stats["criterion"] == "distance"
    got, _ = gradient_groups(g, 2, seed=0, n_init=40, n_repeats=1, criterion="inertia")
    assert partition(got) == BY_INERTIA


def test_conflict_features_drop_zero_columns():
    g = torch.tensor([[1.0, 0.0, 2.0, 0.0], [3.0, 0.0, -2.0, 0.0]])
    x, dropped = conflict_features(g)
    assert dropped == 2
    # ḡ = (2, 0) over the kept columns; x_i = ḡ ⊙ g_i
    torch.testing.assert_close(x, torch.tensor([[2.0, 0.0], [6.0, 0.0]]))


def test_too_few_distinct_tasks_raise():
    grads = {t: torch.ones(4) for t in "abc"}
    with pytest.raises(ValueError, match="distinct"):
        gradient_groups(grads, 2, seed=0, n_repeats=1)


# --- JSON ---------------------------------------------------------------------------------


def test_groups_json_round_trip(tmp_path):
    groups = random_groups(TASKS, 4, seed=0)
    path = write_groups_json(tmp_path / "g" / "groups.json", groups, {"method": "random", "seed": 0, "note": "x"})
    doc = read_groups_json(path, tasks=TASKS)
    assert doc["groups"] == groups and doc["n_groups"] == 4 and doc["seed"] == 0
    assert doc["method"] == "random" and doc["note"] == "x"
    assert doc["sizes"] == [len(g) for g in groups]
    assert all(doc["group_of"][t] == i for i, g in enumerate(groups) for t in g)
    with pytest.raises(ValueError, match="missing"):
        read_groups_json(path, tasks=TASKS + ["extra"])


def test_groups_json_validation(tmp_path):
    with pytest.raises(ValueError, match="group 0 and group 1"):
        write_groups_json(tmp_path / "a.json", [["a"], ["a", "b"]], {"method": "random", "seed": 0})
    with pytest.raises(ValueError, match="'seed'"):
        write_groups_json(tmp_path / "a.json", [["a"]], {"method": "random"})
    with pytest.raises(ValueError, match="computed"):
        write_groups_json(tmp_path / "a.json", [["a"]], {"method": "random", "seed": 0, "sizes": [2]})
    path = write_groups_json(tmp_path / "a.json", [["a", "b"], ["c"]], {"method": "random", "seed": 0})
    doc = json.loads(path.read_text())
    doc["group_of"]["c"] = 0
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="group_of"):
        read_groups_json(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read"):
        read_groups_json(path)


# --- CLI ----------------------------------------------------------------------------------


def test_cli_group_random_writes_valid_json(tmp_path):
    out = tmp_path / "groups.json"
    assert main(["group", "--benchmark", "10", "--seed", "1", "--method", "random", "--experts", "3",
                 "--out", str(out)]) == 0
    names = registry.benchmark(10, 1)
    doc = read_groups_json(out, tasks=names)
    assert doc["method"] == "random" and doc["n_groups"] == 3 and sorted(doc["sizes"]) == [3, 3, 4]
    assert doc["groups"] == random_groups(names, 3, seed=1)

    out2 = tmp_path / "explicit.json"
    main(["group", "--tasks", *names[:4], "--experts", "2", "--out", str(out2)])
    assert read_groups_json(out2, tasks=names[:4])["n_groups"] == 2


def test_cli_gradient_needs_a_checkpoint(tmp_path):
    with pytest.raises(SystemExit, match="--checkpoint"):
        main(["group", "--benchmark", "10", "--method", "gradient", "--out", str(tmp_path / "g.json")])


def test_group_tasks_is_the_cli_job(tmp_path):
    from m3dt.analysis.grouping import group_tasks

    names = list(registry.benchmark(10, 1))
    cli, fn = tmp_path / "cli.json", tmp_path / "fn.json"
    assert main(["group", "--benchmark", "10", "--seed", "1", "--experts", "3", "--out", str(cli)]) == 0
    groups = group_tasks(names, "random", 3, 1, fn, benchmark=10)
    assert fn.read_text() == cli.read_text()
    assert groups == read_groups_json(fn)["groups"]


@pytest.mark.parametrize("kwargs, match", [({"method": "kmeans"}, "method must be one of"),
                                           ({"method": "gradient"}, "needs a checkpoint and a data_dir")])
def test_group_tasks_bad_arguments(kwargs, match, tmp_path):
    from m3dt.analysis.grouping import group_tasks

    with pytest.raises(ValueError, match=match):
        group_tasks(TASKS, n_groups=2, seed=0, out=tmp_path / "g.json", **kwargs)
    assert not (tmp_path / "g.json").exists()
