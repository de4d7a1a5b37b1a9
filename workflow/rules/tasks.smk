rule task_registry:
    output:
        f"{RESULTS}/tasks/registry.csv",
    log:
        f"{RESULTS}/logs/tasks/registry.log",
    conda:
        "../../envs/m3dt.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/task_table.py"


rule benchmark_task_list:
    output:
        f"{RESULTS}/tasks/mt{{n}}_seed{{seed}}.csv",
    log:
        f"{RESULTS}/logs/tasks/mt{{n}}_seed{{seed}}.log",
    conda:
        "../../envs/m3dt.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        tasks=lambda wc: benchmark_tasks(wc.n, wc.seed),
    script:
        "../scripts/task_table.py"
