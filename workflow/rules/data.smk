# Offline data: experts -> collection (or import of the authors' files) -> quality table.


def expert_of(task):
    from m3dt.data.experts import expert_name

    return expert_name(task)


def needed_experts():
    from m3dt.data.experts import expert_names

    return expert_names(all_data_tasks())


if DATA["source"] == "collect":

    rule train_expert:
        output:
            f"{RESULTS}/experts/{{expert}}/expert.json",
        log:
            f"{RESULTS}/logs/experts/{{expert}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/experts/{{expert}}.tsv"
        threads: 1
        resources:
            mem_mb=6000,
            runtime=RES["train_runtime"],
        conda:
            "../../envs/m3dt.yaml"
        params:
            config=DATA["experts"],
        script:
            "../scripts/train_expert.py"

    rule collect:
        input:
            lambda wc: f"{RESULTS}/experts/{expert_of(wc.task)}/expert.json",
        output:
            f"{RESULTS}/data/{{task}}.h5",
        log:
            f"{RESULTS}/logs/data/{{task}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/{{task}}.tsv"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=RES["train_runtime"],
        conda:
            "../../envs/m3dt.yaml"
        params:
            config=DATA["collect"],
            expert_root=f"{RESULTS}/experts",
        script:
            "../scripts/collect.py"

    rule experts_table:
        input:
            lambda wc: expand(f"{RESULTS}/experts/{{e}}/expert.json", e=needed_experts()),
        output:
            csv=f"{RESULTS}/data/experts.csv",
            png=f"{RESULTS}/data/experts.png",
            pdf=f"{RESULTS}/data/experts.pdf",
        log:
            f"{RESULTS}/logs/data/experts_table.log",
        conda:
            "../../envs/m3dt.yaml"
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            tasks=all_data_tasks(),
            expert_root=f"{RESULTS}/experts",
            threshold=DATA["experts"].get("near_optimal_threshold"),
        script:
            "../scripts/experts_table.py"

else:

    rule import_task:
        output:
            f"{RESULTS}/data/{{task}}.h5",
        log:
            f"{RESULTS}/logs/data/{{task}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/{{task}}.tsv"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=60,
        conda:
            "../../envs/m3dt.yaml"
        params:
            src=DATA["import_dir"],
            max_episodes=DATA["import_max_episodes"],
        script:
            "../scripts/import_task.py"


def data_files(tasks):
    return [f"{RESULTS}/data/{t}.h5" for t in tasks]


def data_outputs():
    out = data_files(all_data_tasks())
    if DATA["source"] == "collect":
        out.append(f"{RESULTS}/data/experts.csv")
    return out
