"""`experts.csv`, the expert-quality figure and the learning curves: `m3dt.experts.table`, `m3dt.plots.experts`."""

from m3dt.experts.config import ExpertConfig
from m3dt.experts.curve import expert_curves
from m3dt.experts.names import expert_names
from m3dt.experts.table import expert_table_rows, write_expert_table
from m3dt.plots.experts import plot_curves, plot_expert_quality
from m3dt.io import log_to

sm = snakemake  # noqa: F821 - injected by Snakemake
with log_to(sm.log[0]) as log:
    thr = sm.params.threshold
    cfg = ExpertConfig(near_optimal_threshold=thr) if thr is not None else None
    rows = expert_table_rows(sm.params.tasks, sm.params.expert_root, cfg)
    write_expert_table(rows, sm.output.csv)
    plot_expert_quality(sm.output.csv, [sm.output.png, sm.output.pdf], threshold=thr)
    curves = expert_curves(expert_names(sm.params.tasks), sm.params.expert_root)
    plot_curves(curves, [sm.output.curves], threshold=thr, title="SAC experts: normalised score during training")
    log.info("%d experts, %d flagged", len(rows), sum(r["flagged"] for r in rows))
