"""The headline comparisons over two training seeds, from the evaluation summaries kept here:
runs/ (training seed 0) and runs_t1/ (training_seed_offset 1, same tasks and data): the MT20
Table 1/2 rows, the MT10/MT20 Prompt-DT of Fig. 2 and the MT10 M3DT rows of Table 1 (seed 0 only).
Run from this folder: python headline.py  ->  headline.csv"""

from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RUNS = [  # (task count, label, run folder)
    (10, "Prompt-DT (backbone, w64)", "prompt_dt_w64"),
    (10, "M3DT-Gradient (E=4)", "m3dt_E4_gradient_b8000/router_dense"),
    (10, "M3DT-Random (E=4)", "m3dt_E4_random_b8000/router_dense"),
    (20, "Prompt-DT (backbone, w64)", "prompt_dt_w64"),
    (20, "M3DT-Gradient (E=4)", "m3dt_E4_gradient_b8000/router_dense"),
    (20, "M3DT-Random (E=4)", "m3dt_E4_random_b8000/router_dense"),
    (20, "end-to-end MoE (E=4)", "e2e_moe_E4"),
]
rows = []
for n, model, run in RUNS:
    for seed, folder in ((0, "runs"), (1, "runs_t1")):
        f = HERE / folder / f"mt{n}" / "s0" / run / "eval" / "summary.csv"
        if f.exists():
            s = pd.read_csv(f).set_index("scope")["score_mean"]
            rows.append({"n_tasks": n, "model": model, "training_seed": seed, **s.to_dict()})
per_seed = pd.DataFrame(rows)
agg = per_seed.groupby(["n_tasks", "model"], sort=False)["all"].agg(["mean", "std", "count"])
out = per_seed.round(2)
out.to_csv(HERE / "headline.csv", index=False)
print(out.to_string(index=False))
print()
print(agg.round(2).to_string())
