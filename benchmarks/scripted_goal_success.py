"""Success of metaworld's scripted v3 policies (no action noise) on goal variations 0..9 of
every Meta-World task: do they read the goal from the observation? An episode stops at its
first success (at most 500 steps). Run: `python benchmarks/scripted_goal_success.py`."""
import warnings, time, numpy as np
warnings.filterwarnings("ignore")
from m3dt import tasks
from m3dt.experts.kinds import ScriptedExpert
names=[n for n in tasks.MT160 if tasks.get(n).suite=="metaworld"]
t0=time.time(); tot=[]
for n in names:
    ex=ScriptedExpert(n, action_noise=0.0); rng=np.random.default_rng(0)
    succ=[]
    for g in range(10):
        env=tasks.make_env(n, goal_index=g); obs,_=env.reset(seed=g); ok=False
        for t in range(500):
            a=np.zeros(8,np.float32); a[:4]=ex.act(obs[:39],rng)
            obs,r,te,tr,info=env.step(a)
            if info["success"]: ok=True; break
        succ.append(ok)
    tot.append(np.mean(succ)); print(f"{n:32s} {''.join('1' if s else '0' for s in succ)} {np.mean(succ):.1f}", flush=True)
print("mean success over 50 tasks x goals 0..9:", np.mean(tot), "time", time.time()-t0)
