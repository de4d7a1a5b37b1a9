# Stage 3 (routers on all tasks; top-k and unfrozen-expert ablations) and the
# end-to-end MoE baseline.


rule train_router:
    input:
        assembled=f"{RESULTS}/runs/mt{{n}}/s{{seed}}/m3dt_E{{E}}_{{grouping}}_b{{bstep}}/assembled.pt",
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        final=f"{RESULTS}/runs/mt{{n}}/s{{seed}}/m3dt_E{{E}}_{{grouping}}_b{{bstep}}/router_{{router}}/checkpoints/final.pt",
    log:
        f"{RESULTS}/logs/runs/mt{{n}}/s{{seed}}/m3dt_E{{E}}_{{grouping}}_b{{bstep}}/router_{{router}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/runs/mt{{n}}/s{{seed}}/m3dt_E{{E}}_{{grouping}}_b{{bstep}}/router_{{router}}.tsv"
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["train"]
    resources:
        **train_resources(),
    params:
        stage="router",
        tasks=lambda wc: benchmark_tasks(wc.n, wc.seed),
        data_dir=f"{RESULTS}/data",
        train_experts=lambda wc: wc.router == "dense-unfrozen",
        train=lambda wc: train_params(
            STEPS["router"],
            moe=(
                {"router": "topk", "top_k": top_k(wc.E)}
                if wc.router == "topk"
                else {"router": "dense"}
            ),
            loop={"seed": int(wc.seed), "steps": STEPS["router"]},
        ),
    script:
        "../scripts/train.py"


rule train_e2e_moe:
    input:
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        final=f"{RESULTS}/runs/mt{{n}}/s{{seed}}/e2e_moe_E{{E}}/checkpoints/final.pt",
    log:
        f"{RESULTS}/logs/runs/mt{{n}}/s{{seed}}/e2e_moe_E{{E}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/runs/mt{{n}}/s{{seed}}/e2e_moe_E{{E}}.tsv"
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["train"]
    resources:
        **train_resources(),
    params:
        stage="e2e_moe",
        tasks=lambda wc: benchmark_tasks(wc.n, wc.seed),
        data_dir=f"{RESULTS}/data",
        train=lambda wc: train_params(
            STEPS["e2e_moe"],
            moe={"n_experts": int(wc.E)},
            loop={"seed": int(wc.seed), "steps": STEPS["e2e_moe"]},
        ),
    script:
        "../scripts/train.py"
