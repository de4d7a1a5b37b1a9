"""The seam between the analyses and training: a trained model, endless one-task batches
of its training data and its training loss, which is what `per_task_gradients` (conflict
measurements and gradient grouping) needs."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn


def batches_of(sampler: Any) -> Callable[[str], Iterator[Any]]:
    """`batches(task)` for the gradient analysis: an endless iterator of one-task batches
    of a `MultiTaskSampler`."""

    def gen(task: str) -> Iterator[Any]:
        while True:
            yield sampler.sample_task(task)

    return gen


def load_model_and_batches(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    tasks: Sequence[str],
    device: str = "cpu",
    batch_size: int | None = None,
    seed: int = 0,
) -> tuple[nn.Module, Callable[[str], Iterable[Any]], Callable[[nn.Module, Any], Tensor]]:
    """Seam between the analysis and the training package: (model, batches, loss_fn).

    `model`: the policy restored from `checkpoint` (`m3dt.policy.load_policy`; any model
    kind); `batches(task)`: an endless iterator of that task's batches, sampled with the
    checkpoint's training sampler settings (`batch_size` overrides) from `data_dir`;
    `loss_fn(model, batch)`: the training loss. These are exactly the three things
    `per_task_gradients` needs.
    """
    from m3dt.checkpoint import read_meta
    from m3dt.config import TrainConfig
    from m3dt.policy import load_policy
    from m3dt.train.data import load_sampler
    from m3dt.train.losses import action_loss

    policy = load_policy(checkpoint, device)
    tc = read_meta(checkpoint).get("train_config")
    cfg = TrainConfig.from_stored(tc) if tc else TrainConfig()
    sampler_cfg = dataclasses.replace(cfg.sampler, seed=seed, mode="round_robin",
                                      batch_size=batch_size or cfg.sampler.batch_size)
    cfg = dataclasses.replace(cfg, sampler=sampler_cfg)
    sampler = load_sampler(data_dir, tasks, cfg)
    return policy.model, batches_of(sampler), action_loss
