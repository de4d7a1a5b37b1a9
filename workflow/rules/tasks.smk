rule task_registry:
    output:
        task_table(),
    log:
        task_table_log(),
    conda:
        "../../envs/m3dt.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/task_table.py"


rule benchmark_task_list:
    output:
        task_table(benchmark_list()),
    log:
        task_table_log(benchmark_list()),
    conda:
        "../../envs/m3dt.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        tasks=lambda wc: benchmark_tasks(wc.n, wc.seed),
    script:
        "../scripts/task_table.py"
