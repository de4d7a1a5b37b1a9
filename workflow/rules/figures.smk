# One rule per paper figure and table. Each gets lists of evaluation summaries and
# conflict CSVs, each with the parameters of its run (model, task count, seed, ...).

FIGURES = ["fig2", "fig3", "fig6", "fig7", "fig9", "fig12"]
TABLES = ["table1", "table2"]


def P(model, n, seed, **kw):
    d = dict(model=model, n_tasks=int(n), seed=int(seed), width=WIDTH, step=B_MAIN)
    d.update(kw)
    return d


def pdt(n, s, width=None):
    w = WIDTH if width is None else int(width)
    return summary(n, s, dense_name("prompt_dt", w)), P("prompt_dt", n, s, width=w)


def m3dt(n, s, E, grouping, router="dense", bstep=None, model="m3dt"):
    return summary(n, s, m3dt_name(E, grouping, router, bstep)), P(
        model,
        n,
        s,
        n_experts=int(E),
        grouping=grouping,
        router="topk" if router == "topk" else "dense",
        step=B_MAIN if bstep is None else int(bstep),
    )


def figure_scores(fig):
    """[(summary csv, params)] of a figure or table."""
    out = []
    for s in SEEDS:
        if fig == "fig2":
            out += [pdt(n, s) for n in TASK_COUNTS]
        elif fig == "fig3":
            out += [pdt(n, s, w) for n in TASK_COUNTS for w in EXP["widths"]]
        elif fig == "fig6":
            out += [m3dt(n, s, E, G_FIG) for n in E_TASK_COUNTS for E in E_COUNTS]
            out += [pdt(n, s) for n in E_TASK_COUNTS]
        elif fig == "fig7":
            out += [m3dt(N_MAX, s, E_MAIN, G_FIG, bstep=b) for b in B_STEPS]
        elif fig == "fig9":
            out += [m3dt(N_MAX, s, E, G_FIG, r) for E in E_COUNTS for r in ("dense", "topk")]
        elif fig == "table1":
            ws = sorted({min(EXP["widths"]), max(EXP["widths"])})
            for n in TASK_COUNTS:
                out.append((summary(n, s, dense_name("mtdt", WIDTH)), P("mtdt", n, s)))
                out += [pdt(n, s, w) for w in ws]
                out += [
                    (summary(n, s, dense_name("harmodt", w)), P("harmodt", n, s, width=w))
                    for w in EXP["harmodt_widths"]
                ]
                out += [m3dt(n, s, E_MAIN, g) for g in GROUPINGS]
        elif fig == "table2":
            n = N_MAX
            out += [m3dt(n, s, E_MAIN, g) for g in GROUPINGS]
            out.append(m3dt(n, s, E_MAIN, "none", model="m3dt_no_grouping"))
            out.append(m3dt(n, s, E_MAIN, G_FIG, "dense-unfrozen", model="m3dt_unfrozen_experts"))
            out.append(m3dt(n, s, E_MAIN, G_FIG, "topk", model="m3dt_topk"))
            out.append(
                (
                    summary(n, s, f"e2e_moe_E{E_MAIN}"),
                    P("e2e_moe", n, s, n_experts=E_MAIN, router="dense"),
                )
            )
            out.append(pdt(n, s))
    return out


def figure_conflicts(fig):
    """[(conflict csv, params)] of a figure."""
    out = []
    for s in SEEDS:
        if fig == "fig2":
            name = dense_name("prompt_dt", WIDTH)
            out += [(conflict_csv(n, s, name), P("prompt_dt", n, s)) for n in TASK_COUNTS]
        elif fig == "fig7":
            name = dense_name("prompt_dt", WIDTH)
            out += [
                (conflict_csv(N_MAX, s, name, f"step_{b}"), P("prompt_dt", N_MAX, s, step=b))
                for b in B_STEPS
            ]
        elif fig == "fig12":
            out.append(
                (
                    conflict_csv(N_MAX, s, m3dt_name(E_MAIN, G_FIG)),
                    P("m3dt", N_MAX, s, n_experts=E_MAIN),
                )
            )
            out.append(
                (
                    conflict_csv(N_MAX, s, f"e2e_moe_E{E_MAIN}"),
                    P("e2e_moe", N_MAX, s, n_experts=E_MAIN),
                )
            )
    return out


def single_task_gap_input(fig):
    return [f"{RESULTS}/tables/single_task.csv"] if fig == "table1" else []


rule figure:
    input:
        scores=lambda wc: [p for p, _ in figure_scores(wc.fig)],
        conflict=lambda wc: [p for p, _ in figure_conflicts(wc.fig)],
        single_task=lambda wc: single_task_gap_input(wc.fig),
    output:
        csv=f"{RESULTS}/{{kind}}/{{fig}}.csv",
        extra=multiext(f"{RESULTS}/{{kind}}/{{fig}}", ".pdf", ".png"),
    wildcard_constraints:
        kind="figures",
        fig="|".join(FIGURES),
    log:
        f"{RESULTS}/logs/figures/{{kind}}_{{fig}}.log",
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
        csv=f"{RESULTS}/{{kind}}/{{fig}}.csv",
        extra=f"{RESULTS}/{{kind}}/{{fig}}.md",
    wildcard_constraints:
        kind="tables",
        fig="|".join(TABLES),
    log:
        f"{RESULTS}/logs/figures/{{kind}}_{{fig}}.log",


rule single_task_table:
    input:
        scores=lambda wc: [
            f"{RESULTS}/runs/single/{t}/prompt_dt_w{config['single_task']['width']}/eval/scores.csv"
            for t in single_tasks()
        ],
        experts=(
            [f"{RESULTS}/data/experts.csv"] if DATA["source"] == "collect" else []
        ),
    output:
        csv=f"{RESULTS}/tables/single_task.csv",
        md=f"{RESULTS}/tables/single_task.md",
        fig=multiext(f"{RESULTS}/figures/single_task", ".pdf", ".png", ".csv"),
    log:
        f"{RESULTS}/logs/figures/single_task.log",
    conda:
        "../../envs/m3dt.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tasks=single_tasks(),
        preset=config["preset"],
    script:
        "../scripts/single_task.py"


def figure_outputs():
    return (
        expand(f"{RESULTS}/figures/{{f}}.{{ext}}", f=FIGURES, ext=["pdf", "png", "csv"])
        + expand(f"{RESULTS}/tables/{{t}}.{{ext}}", t=TABLES, ext=["csv", "md"])
        + [f"{RESULTS}/tables/single_task.csv", f"{RESULTS}/figures/single_task.png"]
    )
