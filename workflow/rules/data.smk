# Offline data: experts -> collection (or import of the authors' files) -> quality table.


if DATA["source"] == "collect":

    rule train_expert:
        output:
            expert_json(),
        log:
            log_of(f"{EXPERT_ROOT}/{{expert}}"),
        benchmark:
            bench_of(f"{EXPERT_ROOT}/{{expert}}")
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
            lambda wc: expert_json(expert_of(wc.task)),
        output:
            data_file(),
        log:
            log_of(f"{DATA_DIR}/{{task}}"),
        benchmark:
            bench_of(f"{DATA_DIR}/{{task}}")
        conda:
            "../../envs/m3dt.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=RES["train_runtime"],
        params:
            config=DATA["collect"],
            expert_root=EXPERT_ROOT,
        script:
            "../scripts/collect.py"

    rule experts_table:
        input:
            lambda wc: [expert_json(e) for e in needed_experts()],
        output:
            csv=f"{DATA_DIR}/experts.csv",
            png=report(
                f"{DATA_DIR}/experts.png",
                caption="../report/experts.rst",
                category="Data",
            ),
            pdf=f"{DATA_DIR}/experts.pdf",
            curves=report(
                f"{DATA_DIR}/expert_curves.png",
                caption="../report/expert_curves.rst",
                category="Data",
            ),
        log:
            log_of(f"{DATA_DIR}/experts_table"),
        conda:
            "../../envs/m3dt.yaml"
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            tasks=all_data_tasks(),
            expert_root=EXPERT_ROOT,
            threshold=DATA["experts"].get("near_optimal_threshold"),
        script:
            "../scripts/experts_table.py"

else:

    rule import_task:
        output:
            data_file(),
        log:
            log_of(f"{DATA_DIR}/{{task}}"),
        benchmark:
            bench_of(f"{DATA_DIR}/{{task}}")
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
