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
        argv=lambda wc, input, output: [
            "group",
            "--benchmark",
            wc.n,
            "--seed",
            wc.seed,
            "--method",
            wc.grouping,
            "--experts",
            wc.E,
            "--out",
            output[0],
        ]
        + (
            [
                "--checkpoint",
                backbone_step(wc),
                "--data-dir",
                DATA_DIR,
                "--n-batches",
                CONFLICT["n_batches"],
                "--n-init",
                CONFLICT["kmeans_restarts"],
                "--n-repeats",
                CONFLICT["kmeans_repeats"],
                "--reduce",
                CONFLICT["kmeans_reduce"],
            ]
            + ["--train-mode" if CONFLICT["train_mode"] else "--no-train-mode"]
            if wc.grouping == "gradient"
            else []
        ),
    script:
        "../scripts/m3dt_cli.py"
