"""Gradient conflict per parameter group of one checkpoint: `m3dt.analysis.measure.measure_conflict`."""

import torch

from m3dt.analysis.measure import measure_conflict
from m3dt.io import log_to

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]):
    torch.set_num_threads(sm.threads)
    measure_conflict(sm.params.checkpoint, sm.params.tasks, sm.params.data_dir, sm.output[0], seed=sm.params.seed,
                     n_batches=sm.params.n_batches, train_mode=sm.params.train_mode, meta=sm.params.meta)
