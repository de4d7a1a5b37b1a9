# Inputs of the figure and table rules: every evaluation summary and conflict CSV a
# figure needs, each with the parameters of its run (model, task count, seed, ...).

FIGURES = ["fig2", "fig3", "fig6", "fig7", "fig9", "fig12"]
TABLES = ["table1", "table2"]


def P(model, n, seed, **kw):
    d = dict(model=model, n_tasks=int(n), seed=int(seed), width=WIDTH, step=B_DENSE)
    d.update(kw)
    return d


def pdt(n, s, width=None):
    w = WIDTH if width is None else int(width)
    return summary(n, s, dense_name("prompt_dt", w)), P("prompt_dt", n, s, width=w)


def m3dt(n, s, E, grouping, router="dense", bstep=None, model="m3dt"):
    extra = {"top_k": top_k(E)} if router == "topk" else {}
    return summary(n, s, m3dt_name(E, grouping, router, bstep)), P(
        model,
        n,
        s,
        n_experts=int(E),
        grouping=grouping,
        router="topk" if router == "topk" else "dense",
        step=B_MAIN if bstep is None else int(bstep),
        **extra,
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
            out += [
                m3dt(N_MAX, s, E, G_FIG, r) for E in E_COUNTS for r in ("dense", "topk")
            ]
        elif fig == "table1":
            # smallest, largest and the backbone width M3DT is built on (already trained)
            ws = sorted({min(EXP["widths"]), WIDTH, max(EXP["widths"])})
            for n in TASK_COUNTS:
                out.append((summary(n, s, dense_name("mtdt", WIDTH)), P("mtdt", n, s)))
                out += [pdt(n, s, w) for w in ws]
                out += [
                    (
                        summary(n, s, dense_name("harmodt", w)),
                        P("harmodt", n, s, width=w),
                    )
                    for w in EXP["harmodt_widths"]
                ]
                out += [m3dt(n, s, table1_experts(n), g) for g in GROUPINGS]
        elif fig == "table2":
            n = N_MAX
            out += [m3dt(n, s, E_MAIN, g) for g in GROUPINGS]
            out.append(m3dt(n, s, E_MAIN, "none", model="m3dt_no_grouping"))
            out.append(
                m3dt(
                    n, s, E_MAIN, G_FIG, "dense-unfrozen", model="m3dt_unfrozen_experts"
                )
            )
            out.append(m3dt(n, s, E_MAIN, G_FIG, "topk", model="m3dt_topk"))
            out.append(
                (
                    summary(n, s, e2e_name(E_MAIN)),
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
            out += [
                (conflict_csv(n, s, name), P("prompt_dt", n, s)) for n in TASK_COUNTS
            ]
        elif fig == "fig7":
            name = dense_name("prompt_dt", WIDTH)
            out += [
                (
                    conflict_csv(N_MAX, s, name, step_ckpt(b)),
                    P("prompt_dt", N_MAX, s, step=b),
                )
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
                    conflict_csv(N_MAX, s, e2e_name(E_MAIN)),
                    P("e2e_moe", N_MAX, s, n_experts=E_MAIN),
                )
            )
    return out


def figure_target(name):
    """The files of the target `name` (fig6, table1, ...): a figure's pdf and png, a
    table's md."""
    if name in FIGURES:
        return [figure_file("figures", name, ext) for ext in ("pdf", "png")]
    return [figure_file("tables", name, "md")]


def single_task_gap_input(fig):
    return [figure_file("tables", "single_task", "csv")] if fig == "table1" else []


def figure_outputs():
    return (
        [figure_file("figures", f, e) for f in FIGURES for e in ("pdf", "png", "csv")]
        + [figure_file("tables", t, e) for t in TABLES for e in ("csv", "md")]
        + single_task_outputs()
    )
