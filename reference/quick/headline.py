"""The headline comparison at MT20 (Table 1/2 rows) over two training seeds, from the
evaluation summaries kept here: runs/ (training seed 0) and runs_t1/ (training_seed_offset 1,
same tasks and data). Run from this folder: python headline.py  ->  headline.csv"""

from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RUNS = {"Prompt-DT (backbone, w64)": "prompt_dt_w64", "M3DT-Gradient (E=4)": "m3dt_E4_gradient_b8000/router_dense",
        "M3DT-Random (E=4)": "m3dt_E4_random_b8000/router_dense", "end-to-end MoE (E=4)": "e2e_moe_E4"}
rows = []
for model, run in RUNS.items():
    for seed, folder in ((0, "runs"), (1, "runs_t1")):
        f = HERE / folder / "mt20" / "s0" / run / "eval" / "summary.csv"
        if f.exists():
            s = pd.read_csv(f).set_index("scope")["score_mean"]
            rows.append({"model": model, "training_seed": seed, **s.to_dict()})
per_seed = pd.DataFrame(rows)
agg = per_seed.groupby("model", sort=False)["all"].agg(["mean", "std", "count"])
out = per_seed.round(2)
out.to_csv(HERE / "headline.csv", index=False)
print(out.to_string(index=False))
print()
print(agg.round(2).to_string())
