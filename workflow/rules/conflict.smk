# Gradient conflict per parameter group of a checkpoint (Figs. 2, 7, 12).


rule conflict:
    input:
        final=f"{RESULTS}/runs/mt{{n}}/s{{seed}}/{{run}}/checkpoints/final.pt",
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        f"{RESULTS}/runs/mt{{n}}/s{{seed}}/{{run}}/conflict/{{ckpt}}.csv",
    log:
        f"{RESULTS}/logs/runs/mt{{n}}/s{{seed}}/{{run}}/conflict_{{ckpt}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/runs/mt{{n}}/s{{seed}}/{{run}}/conflict_{{ckpt}}.tsv"
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
            f"{RESULTS}/runs/mt{wc.n}/s{wc.seed}/{wc.run}/checkpoints/{wc.ckpt}.pt",
            "--benchmark",
            wc.n,
            "--seed",
            wc.seed,
            "--data-dir",
            f"{RESULTS}/data",
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
