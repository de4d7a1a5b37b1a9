# Stage 2: backbone frozen, expert i trained on group i: one job per expert (then
# `assemble`), or all experts in one job with `train.expert_batching: grouped`.


rule train_expert_stage2:
    input:
        backbone=backbone_ckpt,
        groups=stage2_groups,
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        final=ckpt_path(stage2_dir()),
    log:
        log_of(stage2_dir()),
    benchmark:
        bench_of(stage2_dir())
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["train"]
    resources:
        **train_resources(),
    params:
        backbone=backbone_step,
        stage="expert",
        expert=lambda wc: int(wc.i),
        tasks=lambda wc: benchmark_tasks(wc.n, wc.seed),
        data_dir=data_dir(),
        train=lambda wc: train_params(STEPS["expert"], loop={"seed": train_seed(wc)}),
    script:
        "../scripts/train.py"


rule train_experts_grouped:
    input:
        backbone=backbone_ckpt,
        groups=groups_json(),
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        final=ckpt_path(grouped_dir()),
    log:
        log_of(grouped_dir()),
    benchmark:
        bench_of(grouped_dir())
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["train"]
    resources:
        **train_resources(),
    params:
        backbone=backbone_step,
        stage="experts_grouped",
        data_dir=data_dir(),
        train=lambda wc: train_params(STEPS["expert"], loop={"seed": train_seed(wc)}),
    script:
        "../scripts/train.py"


rule assemble:
    input:
        backbone=backbone_ckpt,
        experts=lambda wc: [ckpt_path(stage2_dir(i, wc)) for i in range(int(wc.E))],
    output:
        assembled_pt(),
    log:
        log_of(m3dt_file("assemble")),
    conda:
        "../../envs/m3dt.yaml"
    resources:
        mem_mb=RES["train_mem_mb"],
        runtime=30,
    params:
        backbone=backbone_step,
        train=lambda wc: train_params(1, loop={"seed": train_seed(wc)}),
    script:
        "../scripts/assemble.py"
