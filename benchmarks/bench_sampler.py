"""Segments per second of the vectorised sampler against the readable per-sample reference.

`MultiTaskSampler` (numpy index arithmetic over flat arrays of all tasks) is compared with
`m3dt.data.sampler_reference.NaiveSampler` (the authors' per-sample loop) on the same
synthetic data, in the same run, for both batching modes (round_robin and mixed, B = 16 as
the paper, and mixed with B = 256; K = 20, prompt 5). Both samplers are first checked to
give identical batches. Synthetic data: 10 tasks spread over the four suites (MT160[::16])
x 200 episodes x 500 steps (1M steps); `--quick`: 4 tasks x 40 episodes.

Printed: segments/s of each and the ratio vectorised / naive (the goal is >= 20x at B = 16,
where numpy's per-call overhead, not data movement, bounds the vectorised sampler).
Run: python benchmarks/bench_sampler.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from m3dt import tasks
from m3dt.data.sampler import MultiTaskSampler, SamplerConfig
from m3dt.data.sampler_reference import NaiveSampler
from m3dt.data.store import TaskData


def synthetic_task(task: str, episodes: int, steps: int, rng: np.random.Generator) -> TaskData:
    """`episodes` episodes of `steps` steps of random data at the task's real dims."""
    spec = tasks.get(task)
    N = episodes * steps
    obs = rng.standard_normal((N, spec.obs_dim), dtype=np.float32)
    act = rng.uniform(-1, 1, (N, spec.action_dim)).astype(np.float32)
    rew = rng.uniform(0, 10, N).astype(np.float32)
    eps = [{"observations": obs[i * steps:(i + 1) * steps], "actions": act[i * steps:(i + 1) * steps],
            "rewards": rew[i * steps:(i + 1) * steps], "terminals": np.zeros(steps, bool)} for i in range(episodes)]
    return TaskData.from_episodes(task, eps, n_prompt=2)


def rate(fn, batch_size: int, min_seconds: float, max_calls: int) -> float:
    """Segments per second of `fn` (one batch per call), over at least `min_seconds`."""
    fn()  # warm-up
    calls, t0 = 0, time.perf_counter()
    while calls < max_calls and (calls == 0 or time.perf_counter() - t0 < min_seconds):
        fn()
        calls += 1
    return calls * batch_size / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 tasks x 40 episodes, shorter timing")
    ap.add_argument("--seconds", type=float, help="timing seconds per sampler and row (default 3, quick 0.5)")
    args = ap.parse_args(argv)
    n_tasks, episodes, steps = (4, 40, 500) if args.quick else (10, 200, 500)
    seconds = args.seconds or (0.5 if args.quick else 3.0)
    names = list(tasks.MT160[::16])[:n_tasks] if not args.quick else list(tasks.MT160[::40])[:n_tasks]
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    data = {t: synthetic_task(t, episodes, steps, rng) for t in names}
    print(f"data: {n_tasks} tasks x {episodes} episodes x {steps} steps ({time.perf_counter() - t0:.1f}s to build)")
    print(f"tasks: {', '.join(names)}")
    print(f"{'mode':<12} {'B':>4} {'vectorised seg/s':>17} {'naive seg/s':>12} {'ratio':>8}")
    for mode, batch_size in (("round_robin", 16), ("mixed", 16), ("mixed", 256)):
        cfg = SamplerConfig(mode=mode, batch_size=batch_size, seed=1)
        t0 = time.perf_counter()
        fast = MultiTaskSampler(data, cfg)
        build_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive = NaiveSampler(data, cfg)
        build_naive = time.perf_counter() - t0
        a, b = fast.sample().numpy(), naive.sample().numpy()
        assert all(np.array_equal(a[k], b[k]) for k in a), "vectorised and naive batches differ"
        r_fast = rate(fast.sample, cfg.batch_size, seconds, 1_000_000)
        r_naive = rate(naive.sample, cfg.batch_size, seconds, 1_000_000)
        print(f"{mode:<12} {batch_size:>4} {r_fast:>17,.0f} {r_naive:>12,.0f} {r_fast / r_naive:>7.1f}x"
              f"   (construction {build_fast:.2f}s vs {build_naive:.2f}s)")


if __name__ == "__main__":
    main()
