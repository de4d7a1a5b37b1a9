# Stage 2: backbone frozen, expert i trained on group i; one job per expert.


rule train_expert_stage2:
    input:
        backbone=backbone_ckpt,
        groups=lambda wc: (
            []
            if wc.grouping == "none"
            else f"{RESULTS}/runs/mt{wc.n}/s{wc.seed}/groups/{wc.grouping}_E{wc.E}_b{wc.bstep}.json"
        ),
        data=lambda wc: data_files(benchmark_tasks(wc.n, wc.seed)),
    output:
        final=f"{RESULTS}/runs/mt{{n}}/s{{seed}}/m3dt_E{{E}}_{{grouping}}_b{{bstep}}/expert{{i}}/checkpoints/final.pt",
    log:
        f"{RESULTS}/logs/runs/mt{{n}}/s{{seed}}/m3dt_E{{E}}_{{grouping}}_b{{bstep}}/expert{{i}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/runs/mt{{n}}/s{{seed}}/m3dt_E{{E}}_{{grouping}}_b{{bstep}}/expert{{i}}.tsv"
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
        data_dir=f"{RESULTS}/data",
        train=lambda wc: train_params(STEPS["expert"], loop={"seed": int(wc.seed)}),
    script:
        "../scripts/train.py"


rule assemble:
    input:
        backbone=backbone_ckpt,
        experts=lambda wc: [
            f"{RESULTS}/runs/mt{wc.n}/s{wc.seed}/m3dt_E{wc.E}_{wc.grouping}_b{wc.bstep}/expert{i}/checkpoints/final.pt"
            for i in range(int(wc.E))
        ],
    output:
        f"{RESULTS}/runs/mt{{n}}/s{{seed}}/m3dt_E{{E}}_{{grouping}}_b{{bstep}}/assembled.pt",
    log:
        f"{RESULTS}/logs/runs/mt{{n}}/s{{seed}}/m3dt_E{{E}}_{{grouping}}_b{{bstep}}/assemble.log",
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
