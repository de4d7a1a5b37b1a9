# Task grouping for stage 2: balanced random, or k-means on backbone gradients.


rule group_tasks:
    input:
        backbone=lambda wc: backbone_ckpt(wc) if wc.grouping == "gradient" else [],
        data=lambda wc: (
            data_files(benchmark_tasks(wc.n, wc.seed))
            if wc.grouping == "gradient"
            else []
        ),
    output:
        groups_json(),
    log:
        log_of(groups_json().removesuffix(".json")),
    benchmark:
        bench_of(groups_json().removesuffix(".json"))
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["train"]
    resources:
        mem_mb=RES["train_mem_mb"],
        runtime=60,
    params:
        tasks=lambda wc: benchmark_tasks(wc.n, wc.seed),
        benchmark=lambda wc: int(wc.n),
        seed=train_seed,
        method=lambda wc: wc.grouping,
        n_groups=lambda wc: int(wc.E),
        # the gradient method's (the random method ignores them)
        checkpoint=lambda wc: backbone_step(wc) if wc.grouping == "gradient" else None,
        data_dir=lambda wc: data_dir() if wc.grouping == "gradient" else None,
        n_batches=CONFLICT["n_batches"],
        n_init=CONFLICT["kmeans_restarts"],
        n_repeats=CONFLICT["kmeans_repeats"],
        reduce=CONFLICT["kmeans_reduce"],
        train_mode=CONFLICT["train_mode"],
    script:
        "../scripts/group.py"
