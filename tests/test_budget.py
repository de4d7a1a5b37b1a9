"""Budget of a preset: dry-run plan parsing, benchmark sums and the DAG replay on N cores."""

import subprocess
import sys
from pathlib import Path

import pytest

from m3dt import budget

ROOT = Path(__file__).resolve().parents[1]

# a, b independent (10 s, 30 s); c needs both (5 s); d needs c, has no benchmark
PLAN = """\
Building DAG of jobs...
[Thu Dec  3 15:13:19 2026]
rule make_a:
    output: r/a.txt
    log: r/logs/a.log
    jobid: 1
    benchmark: r/bench/a.tsv
    reason: Forced execution
    resources: tmpdir=/tmp
[Thu Dec  3 15:13:19 2026]
rule make_b:
    output: r/b.txt
    jobid: 2
    benchmark: r/bench/b.tsv
    threads: 2
    reason: Forced execution
[Thu Dec  3 15:13:19 2026]
rule join:
    input: r/a.txt, r/b.txt, data/external.csv
    output: r/c.txt
    jobid: 3
    benchmark: r/bench/c.tsv
    wildcards: n=10, run=mt10/s0/x_w64
[Thu Dec  3 15:13:19 2026]
localrule all:
    input: r/c.txt
    jobid: 0
    reason: Input files updated by another job: r/c.txt
Job stats:
job      count
"""


def _bench(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t1.0\n")


@pytest.fixture
def timed_jobs(tmp_path):
    _bench(tmp_path / "r/bench/a.tsv", 10.0)
    _bench(tmp_path / "r/bench/b.tsv", 30.0)
    _bench(tmp_path / "r/bench/c.tsv", 5.0)
    jobs = budget.parse_plan(PLAN)
    budget.attach_times(jobs, tmp_path)
    return {j.rule: j for j in jobs}


def test_plan_is_parsed_into_jobs_with_dependencies():
    jobs = {j.rule: j for j in budget.parse_plan(PLAN)}
    assert set(jobs) == {"make_a", "make_b", "join", "all"}
    assert jobs["join"].deps == {1, 2}  # the external input is no job
    assert jobs["all"].deps == {3}
    assert jobs["make_b"].threads == 2 and jobs["make_a"].threads == 1
    assert jobs["make_a"].benchmark == "r/bench/a.tsv" and jobs["all"].benchmark is None
    assert jobs["join"].wildcards == {"n": "10", "run": "mt10/s0/x_w64"} and jobs["all"].wildcards == {}


def test_sums_and_untimed_jobs(timed_jobs):
    table = budget.summarize(list(timed_jobs.values())).set_index("rule")
    assert table.loc["total", "sum_s"] == pytest.approx(45.0)
    assert table.loc["total", "jobs"] == 4 and table.loc["total", "timed"] == 3
    assert table.loc["make_b", "max_s"] == pytest.approx(30.0)


@pytest.mark.parametrize("cores, makespan", [(1, 45.0), (2, 45.0), (3, 35.0), (8, 35.0)])
def test_replay_respects_dependencies_and_threads(timed_jobs, cores, makespan):
    # 1 core: b (2 threads) is capped to 1 core, everything serial; 2 cores: b takes both;
    # 3 cores: a runs beside b, then c -> critical path 30 + 5
    assert budget.simulate(list(timed_jobs.values()), cores) == pytest.approx(makespan)


def test_empty_plan_is_an_error():
    with pytest.raises(ValueError, match="no jobs"):
        budget.parse_plan("Nothing to be done.\n")


def test_cli_plans_the_smoke_preset_untimed(tmp_path):
    out = tmp_path / "budget.csv"
    done = subprocess.run([sys.executable, "-m", "m3dt", "budget", "--configfile", "workflow/presets/smoke.yaml",
                           "--root", str(tmp_path), "--cores", "8", "--csv", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "(0 of " in done.stdout  # nothing timed under an empty root
    assert "train_expert_stage2" in out.read_text()


def _estimator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("estimate_preset", ROOT / "benchmarks" / "estimate_preset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeMeter:
    """Unit costs without measuring: every model step 1 s, env step 1 ms, SAC 10 ms/step."""

    experts = None

    def __init__(self, experts):
        self.experts = experts

    def train_step(self, kind, width, E=0):
        return 1.0

    def eval_forward(self, kind, width, E, B):
        return 0.01

    def env_step(self, task):
        return 0.001

    def sac(self, expert="cheetah-run"):
        return 0.02 / self.experts.for_expert(expert).train_freq, 0.0  # UTD 1: 20 ms/step, UTD 0.5: 10 ms

    def kmeans(self, *args):
        return 2.0

    def n_params(self, width):
        return 1000


def test_estimator_prices_every_job_of_the_smoke_plan():
    est = _estimator()
    cfg = est.load_config(str(ROOT / "workflow/presets/smoke.yaml"))
    assert cfg["preset"] == "smoke" and cfg["steps"]["dense"] == 4  # the preset over config.yaml
    assert cfg["data"]["collect"]["sac_action_noise"] == 0.2  # kept from config.yaml
    jobs = budget.parse_plan(budget.dry_run("all", "workflow/presets/smoke.yaml", None))
    meter = FakeMeter(est.ExpertConfig.from_dict(cfg["data"]["experts"]))
    for job in jobs:
        job.seconds = est.job_seconds(job, cfg, meter)
    by_rule = {j.rule: j for j in jobs}
    assert all(j.seconds > 0 for j in jobs)
    # training: start-up + steps x step time
    assert by_rule["train_dense"].seconds == pytest.approx(est.STARTUP_S["train"] + cfg["steps"]["dense"])
    assert by_rule["train_router"].seconds == pytest.approx(est.STARTUP_S["train"] + cfg["steps"]["router"])
    experts = {j.wildcards["expert"]: j for j in jobs if j.rule == "train_expert"}
    assert experts["ant-dir"].seconds == pytest.approx(est.STARTUP_S["other"] + 5.0)  # bundled: copied, evaluated
    # source: train prices SAC steps at the expert's own UTD (a family: family_overrides train_freq 1) + evaluation
    meter = FakeMeter(est.ExpertConfig.from_dict({**cfg["data"]["experts"], "source": "train"}))
    assert meter.experts.for_expert("ant-dir").train_freq == 1 and meter.experts.train_freq == 2
    dmc = next(e for e in experts if est.expert_kind(e) == "sac")
    for name, per_step in (("ant-dir", 0.02), (dmc, 0.01)):
        seconds = est.job_seconds(experts[name], cfg, meter)
        sac_s = est.STARTUP_S["train"] + meter.experts.sac_steps(name) * per_step
        eval_s = meter.experts.eval_episodes * sum(est.tasks.get(t).episode_length * 0.001
                                                   for t in est.expert_tasks(name))  # 1 ms per env step
        assert seconds == pytest.approx(sac_s + eval_s), name
    assert budget.simulate(jobs, 8) <= budget.simulate(jobs, 2) <= sum(j.seconds for j in jobs)


def test_estimator_meter_runs_every_model_kind():
    """The real Meter times one step of each kind the estimator prices (catches a model
    signature the benchmark scripts no longer match)."""
    est = _estimator()
    cfg = est.load_config(str(ROOT / "workflow/presets/smoke.yaml"))
    meter = est.Meter(cfg)
    for kind, E in (("prompt_dt", 0), ("mtdt", 0), ("expert", 1), ("router", 2), ("e2e", 2)):
        assert meter.train_step(kind, 16, E) > 0, kind
    assert meter.eval_forward("router", 16, 2, 3) > 0 and meter.eval_forward("prompt_dt", 16, 0, 3) > 0


def test_bench_train_runs_one_case():
    done = subprocess.run([sys.executable, "benchmarks/bench_train.py", "--quick", "--stages", "2", "--dtypes", "fp32",
                           "--reps", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stage2" in done.stdout


def test_cli_passes_config_overrides_and_takes_no_abbreviations(tmp_path):
    """`--config KEY=VALUE` reaches Snakemake (a value the schema refuses fails the plan);
    `--conf` is not silently taken as `--configfile`."""
    base = [sys.executable, "-m", "m3dt", "budget", "--configfile", "workflow/presets/smoke.yaml",
            "--root", str(tmp_path)]
    bad = subprocess.run(base + ["--config", "training_seed_offset=-1"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "training_seed_offset" in bad.stderr
    ok = subprocess.run(base + ["--config", "training_seed_offset=1"], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    abbrev = subprocess.run(base + ["--conf", "x.yaml"], cwd=ROOT, capture_output=True, text=True)
    assert abbrev.returncode != 0 and "unrecognized arguments" in abbrev.stderr
