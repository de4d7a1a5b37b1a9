"""One paper figure or table from evaluation summaries and conflict CSVs: `m3dt.plots`."""

from pathlib import Path

import pandas as pd

from m3dt import plots
from m3dt.io import log_to
from m3dt.plots.workflow import make

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]):
    scores = plots.collect_scores(list(sm.input.scores), sm.params.score_params) if sm.input.scores else None
    conflict = (plots.collect_conflict(list(sm.input.conflict), sm.params.conflict_params)
                if sm.input.conflict else None)
    single = pd.read_csv(sm.input.single_task[0]) if sm.input.single_task else None
    make(sm.wildcards.fig, str(Path(sm.output.csv).with_suffix("")), sm.params.preset, scores=scores,
         conflict=conflict, metric=sm.params.metric, single_task=single)
