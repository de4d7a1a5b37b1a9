# Offline data: experts -> collection (or import of the authors' files) -> quality table.


if DATA["source"] == "collect":

    rule train_expert:
        output:
            expert_json(),
        log:
            log_of(expert_dir()),
        benchmark:
            bench_of(expert_dir())
        conda:
            "../../envs/m3dt.yaml"
        threads: 1
        resources:
            mem_mb=6000,
            runtime=RES["train_runtime"],
        params:
            # only the settings this expert depends on: changing one reruns only its experts
            config=lambda wc: EXPERTS.settings_of(wc.expert),
        script:
            "../scripts/train_expert.py"

    rule collect:
        input:
            lambda wc: expert_json(expert_of(wc.task)),
        output:
            data_file(),
        log:
            log_of(data_stem()),
        benchmark:
            bench_of(data_stem())
        conda:
            "../../envs/m3dt.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=RES["train_runtime"],
        params:
            config=DATA["collect"],
            expert_root=expert_root(),
        script:
            "../scripts/collect.py"

    rule experts_table:
        input:
            lambda wc: [expert_json(e) for e in needed_experts()],
        output:
            csv=experts_table("csv"),
            png=report(
                experts_table("png"),
                caption="../report/experts.rst",
                category="Data",
            ),
            pdf=experts_table("pdf"),
            curves=report(
                expert_curves("png"),
                caption="../report/expert_curves.rst",
                category="Data",
            ),
        log:
            log_of(data_stem("experts_table")),
        conda:
            "../../envs/m3dt.yaml"
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            tasks=all_data_tasks(),
            expert_root=expert_root(),
            threshold=DATA["experts"].get("near_optimal_threshold"),
        script:
            "../scripts/experts_table.py"

else:

    rule import_task:
        output:
            data_file(),
        log:
            log_of(data_stem()),
        benchmark:
            bench_of(data_stem())
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
