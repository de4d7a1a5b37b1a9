# M3DT reproduction workflow: data -> backbone -> conflict -> groups -> experts -> routers
# -> evaluation -> figures and tables. Rules live in workflow/rules/*.smk; every rule's
# script is a thin call into the `m3dt` package.


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/tasks.smk"


rule all:
    default_target: True
    input:
        registry_outputs(),
