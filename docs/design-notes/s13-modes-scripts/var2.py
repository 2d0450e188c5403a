"""Variant runner with the gauge-free measure: NRMSE after the best complex scale (amplitude gauge + phase)."""
import sys, json, os; sys.path.insert(0, "/tmp/modes_exp")
from common import *
from scale import nrmse_scale
from ptyxr.reconstruct import modes as M
ITS = (250, 300)
def twin(nE=2, **over):
    f = f"/tmp/modes_exp/twin2_{nE}_{sorted(over.items())}.json".replace(" ", "")
    if os.path.exists(f):
        return {int(k): v for k, v in json.load(open(f)).items()}
    traw, ttruth = data(nE, modes=False, **over)
    d = {}
    for it in ITS:
        o = run(traw, iterations=it)[0]
        d[it] = [[float(x) for x in nrmse(o, ttruth)], [float(x) for x in nrmse_scale(o, ttruth)[:, 0]]]
    json.dump(d, open(f, "w")); return d
def evaluate(label, nE=2, its=ITS, over={}, **kw):
    tw = twin(nE, **over); raw, truth = data(nE, **over)
    r1, r2, e2 = [], [], []
    t0 = time.time()
    for it in its:
        o, _ = run(raw, iterations=it, probe_modes=3, **kw)
        b = nrmse(o, truth); s = nrmse_scale(o, truth)[:, 0]
        r1.append(b.mean() / np.mean(tw[it][0])); r2.append(s.mean() / np.mean(tw[it][1])); e2.append(s)
    fr = o[S.PROBE_MODE_FRACTION].values.mean(0).round(3)
    print(f"{label}: scale-fit K3 {np.round(np.mean(e2,0),5)} twin {np.round(np.mean([tw[i][1] for i in its],0),5)} ratio {np.mean(r2):.3f} (phase-only ratio {np.mean(r1):.3f}) fr {fr} {time.time()-t0:.0f}s", flush=True)
    return np.mean(r2)
