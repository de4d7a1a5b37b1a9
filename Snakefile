# M3DT reproduction workflow: data -> backbone -> conflict -> groups -> experts -> routers
# -> evaluation -> figures and tables. Rules live in workflow/rules/*.smk; every rule's
# script is a thin call into the `m3dt` package.


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/tasks.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/backbone.smk"
include: "workflow/rules/conflict.smk"
include: "workflow/rules/grouping.smk"
include: "workflow/rules/experts.smk"
include: "workflow/rules/router.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figure_inputs.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        registry_outputs(),
        data_outputs(),
        figure_outputs(),


rule data:
    input:
        data_outputs(),


rule fidelity:
    input:
        single_task_outputs(),


for _f in FIGURES + TABLES:

    rule:
        name:
            _f
        input:
            figure_target(_f),
