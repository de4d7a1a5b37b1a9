# Gradient conflict per parameter group of a checkpoint (Figs. 2, 7, 12).


rule conflict:
    input:
        final=ckpt_path(run_dir()),
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        conflict_csv(ckpt="{ckpt}"),
    log:
        log_of(conflict_stem()),
    benchmark:
        bench_of(conflict_stem())
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["train"]
    resources:
        mem_mb=RES["train_mem_mb"],
        runtime=60,
    params:
        checkpoint=lambda wc: ckpt_path(run_dir(wc.n, wc.seed, wc.run), wc.ckpt),
        tasks=lambda wc: benchmark_tasks(wc.n, wc.seed),
        seed=train_seed,
        data_dir=data_dir(),
        n_batches=CONFLICT["n_batches"],
        train_mode=CONFLICT["train_mode"],
        meta=lambda wc: {
            "n_tasks": int(wc.n),
            "seed": int(wc.seed),
            "run": wc.run,
            "checkpoint": wc.ckpt,
        },
    script:
        "../scripts/conflict.py"
