# Stage 1 (the Prompt-DT backbone) and the dense baselines: Prompt-DT at every width,
# MTDT, HarmoDT; and the single-task Prompt-DTs of the fidelity study.


rule train_dense:
    input:
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        final=ckpt_path(dense_dir()),
    log:
        log_of(dense_dir()),
    benchmark:
        bench_of(dense_dir())
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["train"]
    resources:
        **train_resources(),
    params:
        stage=lambda wc: wc.dense,
        tasks=lambda wc: benchmark_tasks(wc.n, wc.seed),
        data_dir=data_dir(),
        train=lambda wc: train_params(
            STEPS["dense"],
            model={"width": int(wc.width)},
            loop={
                "seed": train_seed(wc),
                "keep_steps": B_STEPS,
            },
        ),
    script:
        "../scripts/train.py"


rule train_single_task:
    input:
        data=lambda wc: data_files([wc.task]),
    output:
        final=ckpt_path(single_dir()),
    log:
        log_of(single_dir()),
    benchmark:
        bench_of(single_dir())
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["train"]
    resources:
        **train_resources(),
    params:
        stage="prompt_dt",
        tasks=lambda wc: [wc.task],
        data_dir=data_dir(),
        train=lambda wc: train_params(
            STEPS["single_task"], model={"width": int(wc.width)}
        ),
    script:
        "../scripts/train.py"
