# Stage 3 (routers on all tasks; top-k and unfrozen-expert ablations) and the
# end-to-end MoE baseline.


rule train_router:
    input:
        assembled=assembled_ckpt,
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        final=ckpt_path(router_dir()),
    log:
        log_of(router_dir()),
    benchmark:
        bench_of(router_dir())
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["train"]
    resources:
        **train_resources(),
    params:
        stage="router",
        tasks=lambda wc: benchmark_tasks(wc.n, wc.seed),
        data_dir=data_dir(),
        train_experts=lambda wc: wc.router == "dense-unfrozen",
        train=lambda wc: train_params(
            STEPS["router"],
            moe=(
                {"router": "topk", "top_k": top_k(wc.E)}
                if wc.router == "topk"
                else {"router": "dense"}
            ),
            loop={"seed": train_seed(wc)},
        ),
    script:
        "../scripts/train.py"


rule train_e2e_moe:
    input:
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        final=ckpt_path(e2e_dir()),
    log:
        log_of(e2e_dir()),
    benchmark:
        bench_of(e2e_dir())
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["train"]
    resources:
        **train_resources(),
    params:
        stage="e2e_moe",
        tasks=lambda wc: benchmark_tasks(wc.n, wc.seed),
        data_dir=data_dir(),
        train=lambda wc: train_params(
            STEPS["e2e_moe"],
            moe={"n_experts": int(wc.E)},
            loop={"seed": train_seed(wc)},
        ),
    script:
        "../scripts/train.py"
