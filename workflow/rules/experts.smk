# Stage 2: backbone frozen, expert i trained on group i: one job per expert (then
# `assemble`), or all experts in one job with `train.expert_batching: grouped`.


rule train_expert_stage2:
    input:
        backbone=backbone_ckpt,
        groups=stage2_groups,
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        final=ckpt_path(f"{m3dt_dir()}/expert{{i}}"),
    log:
        log_of(f"{m3dt_dir()}/expert{{i}}"),
    benchmark:
        bench_of(f"{m3dt_dir()}/expert{{i}}")
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
        data_dir=DATA_DIR,
        train=lambda wc: train_params(STEPS["expert"], loop={"seed": int(wc.seed)}),
    script:
        "../scripts/train.py"


rule train_experts_grouped:
    input:
        backbone=backbone_ckpt,
        groups=groups_json(),
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        final=ckpt_path(f"{m3dt_dir()}/experts_grouped"),
    log:
        log_of(f"{m3dt_dir()}/experts_grouped"),
    benchmark:
        bench_of(f"{m3dt_dir()}/experts_grouped")
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["train"]
    resources:
        **train_resources(),
    params:
        backbone=backbone_step,
        stage="experts_grouped",
        data_dir=DATA_DIR,
        train=lambda wc: train_params(STEPS["expert"], loop={"seed": int(wc.seed)}),
    script:
        "../scripts/train.py"


rule assemble:
    input:
        backbone=backbone_ckpt,
        experts=lambda wc: [
            ckpt_path(f"{wc_m3dt_dir(wc)}/expert{i}") for i in range(int(wc.E))
        ],
    output:
        f"{m3dt_dir()}/assembled.pt",
    log:
        log_of(f"{m3dt_dir()}/assemble"),
    conda:
        "../../envs/m3dt.yaml"
    resources:
        mem_mb=RES["train_mem_mb"],
        runtime=30,
    params:
        backbone=backbone_step,
        train=lambda wc: train_params(1, loop={"seed": int(wc.seed)}),
    script:
        "../scripts/assemble.py"
