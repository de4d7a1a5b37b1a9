"""Experts that generate the offline data: scripted Meta-World policies and SAC agents.

Three kinds, one interface (`Expert.act(obs_unpadded, rng) -> action (action_dim,)`):

- ``scripted``: Meta-World's hand-written policy for the task's v3 env
  (`metaworld.policies.ENV_POLICY_MAP`), plus Gaussian action noise
  (`ExpertConfig.metaworld_action_noise`), clipped to [-1, 1]. Needs no training.
- ``sac``: one SAC agent (stable-baselines3, or sbx with `library: sbx`) per DMC task, trained on the task's unpadded
  environment (obs `obs_dim`, action `action_dim`, 500 agent steps per episode).
- ``sac-goal``: one goal-conditioned SAC agent per family (ant-dir, cheetah-vel), trained
  across the family's 40 goals (a goal is drawn uniformly per episode). The goal features
  -- (cos theta, sin theta) for ant-dir, the target velocity for cheetah-vel -- are appended
  to the agent's input only; recorded observations never contain them. One agent amortises
  the simulation and update budget over the 40 goals (and shares what is common: gait,
  balance) instead of 40 independent agents that each pay for learning to walk.

Layout of an expert folder (`<expert_root>/<expert_name>/`, `expert_name(task)` gives the
name: the task for Meta-World and DMC, ``ant-dir`` / ``cheetah-vel`` for the families)::

    expert.json      kind, tasks covered, config, training stats, per-task evaluation
    model.zip        the SAC agent (SAC experts only)
    metrics.csv      training metrics (step, steps/s, returns, losses, ...)
    checkpoint/      model + replay buffer + state every `checkpoint_every` steps (resume)

An expert whose normalised score is below its near-optimal threshold is *flagged*: logged
with a WARNING, marked in `expert.json` and in the expert table, and refused by data
collection unless the caller passes `allow_flagged=True`.

Modules (one job each; importing the package or any of them loads no gymnasium, torch,
stable-baselines3 or metaworld -- those are imported where they are used):

    names       expert names, kinds, the tasks an expert covers, goal features, folder layout
    config      `ExpertConfig` and config-file reading
    envs        training envs: `StripPadding`, `GoalFamilyEnv`, `make_training_env`
    kinds       `Expert`, `ScriptedExpert`, `SACExpert`, `bind_expert`, `load_expert`
    rollout     `rollout` and `episode_seed` (shared with data collection), `evaluate_expert`
    sac         `build_sac`, SAC training with checkpoint/resume, `train_expert`
    sac_library the SAC implementations (`library`: sb3, sbx) and their classes
    sac_policy  the actor-only `policy.pt` (export, load)
    curve       learning-curve points (`curve.csv`)
    bundle      experts shipped with the package (`bundled/<name>/`)
    table       the expert-quality table and its reference scores
    cli         `python -m m3dt data train-expert | experts-table`

The figures (expert quality, learning curves) are `m3dt.plots.experts`.
"""
