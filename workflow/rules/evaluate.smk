# Rollouts of any policy checkpoint on the tasks it was trained on -> per-task scores.
# The worker count is the job's threads (threads.evaluate, at most --cores).


rule evaluate:
    input:
        ckpt_path(runs_path()),
    output:
        scores=eval_scores(),
        summary=eval_summary(),
    log:
        log_of(eval_stem()),
    benchmark:
        bench_of(eval_stem())
    conda:
        "../../envs/m3dt.yaml"
    threads: THREADS["evaluate"]
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        episodes=EVAL["episodes"],
        seed=EVAL["seed"],
        max_steps=EVAL["max_steps"],
        device=EVAL["device"],
        prompt_episode=EVAL["prompt_episode"],
        action_history=EVAL["action_history"],
        bf16=EVAL["bf16"],
    script:
        "../scripts/evaluate.py"
