# One rule per paper figure and table. Each gets lists of evaluation summaries and
# conflict CSVs, each with the parameters of its run (model, task count, seed, ...).


rule figure:
    input:
        scores=lambda wc: [p for p, _ in figure_scores(wc.fig)],
        conflict=lambda wc: [p for p, _ in figure_conflicts(wc.fig)],
        single_task=lambda wc: single_task_gap_input(wc.fig),
    output:
        csv=figure_file(ext="csv"),
        pdf=figure_file(ext="pdf"),
        png=report(
            figure_file(ext="png"),
            caption="../report/figure.rst",
            category="Figures",
        ),
    log:
        figures_log(),
    wildcard_constraints:
        kind="figures",
        fig="|".join(FIGURES),
    conda:
        "../../envs/m3dt.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        score_params=lambda wc: [q for _, q in figure_scores(wc.fig)],
        conflict_params=lambda wc: [q for _, q in figure_conflicts(wc.fig)],
        preset=config["preset"],
        metric=CONFLICT["metric"],
    script:
        "../scripts/figure.py"


use rule figure as table with:
    output:
        csv=figure_file(ext="csv"),
        md=report(
            figure_file(ext="md"),
            caption="../report/figure.rst",
            category="Tables",
        ),
    log:
        figures_log(),
    wildcard_constraints:
        kind="tables",
        fig="|".join(TABLES),


rule single_task_table:
    input:
        scores=lambda wc: [
            eval_scores(single_dir(t, config["single_task"]["width"]))
            for t in single_tasks()
        ],
        experts=lambda wc: (
            [expert_json(expert_of(t)) for t in single_tasks()]
            if DATA["source"] == "collect"
            else []
        ),
    output:
        csv=figure_file("tables", "single_task", "csv"),
        md=figure_file("tables", "single_task", "md"),
        fig=multiext(figure_stem("figures", "single_task"), ".pdf", ".csv"),
        png=report(
            figure_file("figures", "single_task", "png"),
            caption="../report/single_task.rst",
            category="Single-task study",
        ),
    log:
        figures_log("single_task"),
    conda:
        "../../envs/m3dt.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tasks=single_tasks(),
        expert_root=expert_root() if DATA["source"] == "collect" else None,
        preset=config["preset"],
    script:
        "../scripts/single_task.py"
