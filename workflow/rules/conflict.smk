# Gradient conflict per parameter group of a checkpoint (Figs. 2, 7, 12).


rule conflict:
    input:
        final=ckpt_path(run_dir()),
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        f"{run_dir()}/conflict/{{ckpt}}.csv",
    log:
        log_of(f"{run_dir()}/conflict_{{ckpt}}"),
    benchmark:
        bench_of(f"{run_dir()}/conflict_{{ckpt}}")
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["train"]
    resources:
        mem_mb=RES["train_mem_mb"],
        runtime=60,
    params:
        argv=lambda wc, input, output: [
            "conflict",
            "--checkpoint",
            ckpt_path(run_dir(wc.n, wc.seed, wc.run), wc.ckpt),
            "--benchmark",
            wc.n,
            "--seed",
            wc.seed,
            "--data-dir",
            DATA_DIR,
            "--n-batches",
            CONFLICT["n_batches"],
            "--out",
            output[0],
            "--meta",
            f"n_tasks={wc.n}",
            f"seed={wc.seed}",
            f"run={wc.run}",
            f"checkpoint={wc.ckpt}",
        ]
        + ["--train-mode" if CONFLICT["train_mode"] else "--no-train-mode"],
    script:
        "../scripts/m3dt_cli.py"
