# Offline data: experts -> collection (or import of the authors' files) -> quality table.


if DATA["source"] == "collect":

    rule train_expert:
        output:
            f"{RESULTS}/experts/{{expert}}/expert.json",
        log:
            f"{RESULTS}/logs/experts/{{expert}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/experts/{{expert}}.tsv"
        conda:
            "../../envs/m3dt.yaml"
        threads: 1
        resources:
            mem_mb=6000,
            runtime=RES["train_runtime"],
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
        conda:
            "../../envs/m3dt.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=RES["train_runtime"],
        params:
            config=DATA["collect"],
            expert_root=f"{RESULTS}/experts",
        script:
            "../scripts/collect.py"

    rule experts_table:
        input:
            lambda wc: expand(
                f"{RESULTS}/experts/{{e}}/expert.json", e=needed_experts()
            ),
        output:
            csv=f"{RESULTS}/data/experts.csv",
            png=report(
                f"{RESULTS}/data/experts.png",
                caption="../report/experts.rst",
                category="Data",
            ),
            pdf=f"{RESULTS}/data/experts.pdf",
            curves=report(
                f"{RESULTS}/data/expert_curves.png",
                caption="../report/expert_curves.rst",
                category="Data",
            ),
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
        conda:
            "../../envs/m3dt.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=60,
        params:
            src=DATA["import_dir"],
            max_episodes=DATA["import_max_episodes"],
        script:
            "../scripts/import_task.py"
