"""Full random-action episodes through the padded interface, per task: steps/s per suite.

Also the check that every one of the 160 tasks runs a complete episode. The ratio
column compares the padded env with the raw simulator env (`env.env`) stepped with the
same actions in the same run: the wrapper's overhead.

    python benchmarks/bench_envs.py [--suite dmc] [--tasks walker-walk ...] [--episodes 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from m3dt import tasks


def run_task(name: str, seed: int = 0) -> dict:
    spec = tasks.get(name)
    t0 = time.perf_counter()
    env = tasks.make_env(name, seed=seed)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (spec.episode_length, tasks.ACT_PAD))
    env.reset(seed=seed)
    t0 = time.perf_counter()
    steps = 0
    for a in actions:
        _, _, terminated, truncated, info = env.step(a)
        steps += 1
        if terminated or truncated:
            break
    padded_s = time.perf_counter() - t0
    assert "episode" in info, f"{name}: episode did not end within {spec.episode_length} steps"
    raw = env.env  # the simulator env under the padding wrapper
    raw.reset(seed=seed)
    t0 = time.perf_counter()
    for a in actions[:steps]:
        raw.step(a[: spec.action_dim])
    raw_s = time.perf_counter() - t0
    return {"task": name, "suite": spec.suite, "steps": steps, "build_s": build_s,
            "steps_per_s": steps / padded_s, "raw_steps_per_s": steps / raw_s,
            "score": info["episode"]["normalized_score"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=sorted(tasks.SUITES))
    p.add_argument("--tasks", nargs="*")
    args = p.parse_args()
    names = args.tasks or (tasks.tasks_of_suite(args.suite) if args.suite else tasks.MT160)
    rows = [run_task(n) for n in names]
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 160)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    agg = df.groupby("suite").agg(tasks=("task", "count"), steps_per_s=("steps_per_s", "median"),
                                  raw_steps_per_s=("raw_steps_per_s", "median"), build_s=("build_s", "median"))
    agg["wrapper_ratio"] = agg["steps_per_s"] / agg["raw_steps_per_s"]
    print("\nper suite (medians):")
    print(agg.to_string(float_format=lambda x: f"{x:.3g}"))
    print(f"\n{len(df)} tasks ran a full episode")


if __name__ == "__main__":
    main()
