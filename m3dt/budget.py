"""What a preset costs: sum of rule benchmark times and the wall time on N cores.

Snakemake writes one benchmark TSV per job (`s` = wall seconds of the job). This module
joins them with the job DAG of a dry run (`snakemake <target> -n --forceall`), then

- sums the measured seconds per rule (the serial cost, "core-hours" at one thread a job);
- replays the DAG on N cores with a list scheduler (longest remaining path first, a job
  takes `threads` cores), which is how far `snakemake --cores N` could go with these job
  times. Jobs without a benchmark file (rules that have no `benchmark:`, or jobs that have
  not run) count as zero seconds and are reported as untimed.

CLI: `python -m m3dt budget [--configfile F] [--target all] [--cores 2 8 32] [--csv OUT]`
or `--plan FILE` to read a saved dry-run printout instead of running Snakemake.
"""

from __future__ import annotations

import argparse
import heapq
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

_RULE = re.compile(r"^(?:local)?rule (\S+):$")
_FIELD = re.compile(r"^ {4}([a-z_]+): ?(.*)$")


@dataclass
class Job:
    """One job of a dry-run plan."""

    jobid: int
    rule: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    benchmark: str | None = None
    threads: int = 1
    wildcards: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None  # measured wall seconds, None when untimed
    deps: set[int] = field(default_factory=set)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_plan(text: str) -> list[Job]:
    """Jobs of a `snakemake -n` printout, with dependencies resolved through file names."""
    jobs: list[Job] = []
    current: Job | None = None
    for line in text.splitlines():
        head = _RULE.match(line)
        if head:
            current = Job(jobid=-1, rule=head.group(1))
            jobs.append(current)
            continue
        if current is None:
            continue
        item = _FIELD.match(line)
        if not item:
            if line and not line.startswith(" "):
                current = None  # a new top-level line ends the job block
            continue
        key, value = item.groups()
        if key == "input":
            current.inputs = _split(value)
        elif key == "output":
            current.outputs = _split(value)
        elif key == "benchmark":
            current.benchmark = value.strip()
        elif key == "threads":
            current.threads = int(value)
        elif key == "jobid":
            current.jobid = int(value)
        elif key == "wildcards":
            current.wildcards = dict(kv.split("=", 1) for kv in _split(value))
    if not jobs:
        raise ValueError("no jobs in the dry-run plan: is the target already up to date? (budget uses --forceall)")
    for job in jobs:
        if job.jobid < 0:
            raise ValueError(f"job of rule {job.rule!r} has no jobid line in the dry-run plan")
    producer = {out: job.jobid for job in jobs for out in job.outputs}
    for job in jobs:
        job.deps = {producer[i] for i in job.inputs if i in producer} - {job.jobid}
    return jobs


def read_benchmark(path: Path) -> float:
    """Wall seconds of a Snakemake benchmark TSV (mean over its repeats)."""
    frame = pd.read_csv(path, sep="\t")
    if "s" not in frame.columns or frame.empty:
        raise ValueError(f"{path}: expected a Snakemake benchmark TSV with an 's' column")
    return float(frame["s"].mean())


def attach_times(jobs: list[Job], root: Path = Path(".")) -> None:
    """Fill `seconds` of every job whose benchmark file exists (paths relative to `root`)."""
    for job in jobs:
        if job.benchmark and (root / job.benchmark).is_file():
            job.seconds = read_benchmark(root / job.benchmark)


def simulate(jobs: list[Job], cores: int) -> float:
    """Makespan (s) of the DAG on `cores` cores: list scheduling, longest remaining path first.

    A job takes min(threads, cores) cores; a ready job that does not fit lets smaller ones
    behind it start (backfilling), as Snakemake's scheduler does.
    """
    assert cores >= 1, cores
    by_id = {j.jobid: j for j in jobs}
    children: dict[int, list[int]] = {j.jobid: [] for j in jobs}
    for j in jobs:
        for d in j.deps:
            children[d].append(j.jobid)
    tail: dict[int, float] = {}  # longest path (s) from the job to the end of the DAG
    for jid in reversed(_topological(jobs, children)):
        tail[jid] = (by_id[jid].seconds or 0.0) + max((tail[c] for c in children[jid]), default=0.0)
    waiting = {j.jobid: len(j.deps) for j in jobs}
    ready = [j.jobid for j in jobs if not j.deps]
    running: list[tuple[float, int]] = []  # heap of (finish time, jobid)
    free, now = cores, 0.0
    while ready or running:
        ready.sort(key=lambda jid: -tail[jid])
        blocked = []
        for jid in ready:
            need = min(by_id[jid].threads, cores)
            if need <= free:
                free -= need
                heapq.heappush(running, (now + (by_id[jid].seconds or 0.0), jid))
            else:
                blocked.append(jid)
        ready = blocked
        now, jid = heapq.heappop(running)  # never empty here: a lone job always fits
        free += min(by_id[jid].threads, cores)
        for c in children[jid]:
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.append(c)
    return now


def _topological(jobs: list[Job], children: dict[int, list[int]]) -> list[int]:
    remaining = {j.jobid: len(j.deps) for j in jobs}
    frontier = [jid for jid, n in remaining.items() if n == 0]
    order: list[int] = []
    while frontier:
        jid = frontier.pop()
        order.append(jid)
        for c in children[jid]:
            remaining[c] -= 1
            if remaining[c] == 0:
                frontier.append(c)
    if len(order) != len(jobs):
        raise ValueError("the dry-run plan has a dependency cycle")
    return order


def summarize(jobs: list[Job]) -> pd.DataFrame:
    """Per rule: jobs, timed jobs, sum / mean / max seconds; a final `total` row."""
    frame = pd.DataFrame([{"rule": j.rule, "seconds": j.seconds, "timed": j.seconds is not None} for j in jobs])
    table = frame.groupby("rule", sort=False).agg(
        jobs=("rule", "size"), timed=("timed", "sum"), sum_s=("seconds", "sum"),
        mean_s=("seconds", "mean"), max_s=("seconds", "max"))
    table = table.sort_values("sum_s", ascending=False)
    total = pd.DataFrame({"jobs": [table["jobs"].sum()], "timed": [table["timed"].sum()],
                          "sum_s": [table["sum_s"].sum()], "mean_s": [None], "max_s": [table["max_s"].max()]},
                         index=["total"])
    table = pd.concat([table, total])
    table["core_h"] = table["sum_s"] / 3600.0
    table.index.name = "rule"
    return table.reset_index()


def dry_run(target: str, configfile: str | None, snakefile: str | None,
            config: Sequence[str] = ()) -> str:
    """Printout of `snakemake <target> -n --forceall` (target first: --configfile and --config
    take several values), with `config` (KEY=VALUE overrides) passed on as `--config`."""
    cmd = [sys.executable, "-m", "snakemake", target, "-n", "--forceall", "--cores", "1"]
    if snakefile:
        cmd += ["--snakefile", snakefile]
    if configfile:
        cmd += ["--configfile", configfile]
    if config:
        cmd += ["--config", *config]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return done.stdout + done.stderr


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configfile", help="preset to plan (default: the Snakefile's config.yaml)")
    p.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                   help="Snakemake config overrides for the plan, as in `snakemake --config`")
    p.add_argument("--target", default="all", help="Snakemake target (default all)")
    p.add_argument("--snakefile", help="Snakefile (default: Snakemake's lookup in the current directory)")
    p.add_argument("--plan", type=Path, help="read a saved `snakemake -n --forceall` printout instead")
    p.add_argument("--root", type=Path, default=Path("."), help="directory the plan's paths are relative to")
    p.add_argument("--cores", type=int, nargs="+", default=[2, 8], help="core counts to replay the DAG on")
    p.add_argument("--csv", type=Path, help="also write the per-rule table here")


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run(args: argparse.Namespace) -> int:
    text = args.plan.read_text() if args.plan else dry_run(args.target, args.configfile, args.snakefile, args.config)
    jobs = parse_plan(text)
    attach_times(jobs, args.root)
    table = summarize(jobs)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    total = table.iloc[-1]
    print(f"\nsum of benchmark times: {total['sum_s']:.0f} s = {total['core_h']:.2f} core-hours "
          f"({int(total['timed'])} of {int(total['jobs'])} jobs timed)")
    for cores in args.cores:
        print(f"DAG replayed on {cores:>3} cores: {_hms(simulate(jobs, cores))} (h:mm:ss)")
    if args.csv:
        from m3dt.io import atomic_path

        with atomic_path(args.csv) as tmp:
            table.to_csv(tmp, index=False)
    return 0
