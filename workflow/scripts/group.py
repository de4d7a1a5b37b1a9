"""Task groups of one stage-2 build (random or gradient): `m3dt.analysis.grouping.group_tasks`."""

import torch

from m3dt.analysis.grouping import group_tasks
from m3dt.io import log_to

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]):
    torch.set_num_threads(sm.threads)
    p = sm.params
    group_tasks(p.tasks, p.method, p.n_groups, p.seed, sm.output[0], benchmark=p.benchmark,
                checkpoint=p.checkpoint, data_dir=p.data_dir, n_batches=p.n_batches, n_init=p.n_init,
                n_repeats=p.n_repeats, reduce=p.reduce, train_mode=p.train_mode)
