# Rollouts of any policy checkpoint on the tasks it was trained on -> per-task scores.


rule evaluate:
    input:
        ckpt_path(runs_path()),
    output:
        scores=f"{runs_path()}/eval/scores.csv",
        summary=f"{runs_path()}/eval/summary.csv",
    log:
        log_of(f"{runs_path()}/evaluate"),
    benchmark:
        bench_of(f"{runs_path()}/evaluate")
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["evaluate"]
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        argv=lambda wc, input, output: [
            "evaluate",
            "--checkpoint",
            input[0],
            "--out",
            output.scores,
            "--summary",
            output.summary,
            "--eval-seed",
            EVAL["seed"],
            "--device",
            EVAL["device"],
            "--workers",
            THREADS["evaluate"],
            "--prompt-episode",
            EVAL["prompt_episode"],
            "--action-history",
            EVAL["action_history"],
        ]
        + (["--episodes", EVAL["episodes"]] if EVAL["episodes"] else [])
        + (["--max-steps", EVAL["max_steps"]] if EVAL["max_steps"] else [])
        + ["--bf16", {True: "on", False: "off", "auto": "auto"}[EVAL["bf16"]]],
    script:
        "../scripts/m3dt_cli.py"
