import os, pickle, sys, time
import numpy as np
from ptyxr import schema as S
from ptyxr.reconstruct import epie
from ptyxr.reconstruct.api import reconstruct
import ptyxr.simulate as sim

CACHE = "/tmp/modes_exp"

def data(nE=2, seed=0, modes=True, **over):
    key = f"{CACHE}/d_{seed}_{modes}_{sorted(over.items())}.pkl".replace(" ", "")
    if os.path.exists(key):
        raw, truth = pickle.load(open(key, "rb"))
    else:
        kw = dict(sim.REALISM["probe_modes"]) if modes else {}
        kw.update(over)
        raw, truth = sim.demo_dataset("small", seed=seed, progress=False, **kw)
        raw, truth = raw.load(), truth.load()
        pickle.dump((raw, truth), open(key, "wb"))
    sel = {S.ENERGY: slice(-nE, None)}
    return raw.isel(sel), truth.isel(sel)

def nrmse_after_phase(rec, true, mask):
    a, b = rec[mask], true[mask]
    gamma = np.angle(np.vdot(a, b))
    return float(np.linalg.norm(a * np.exp(1j * gamma) - b) / np.linalg.norm(b - 1))

def nrmse(out, truth, cov=None, extra_shift=None):
    dx = out[S.Y].attrs[S.ATTR_PIXEL_SIZE]
    tr = truth[S.OBJECT].interp({S.Y: out[S.Y], S.X: out[S.X]}, method="nearest").values
    cov = out[S.COVERAGE].values if cov is None else cov
    errs = []
    for e in range(out.sizes[S.ENERGY]):
        shift = (truth[S.SHIFT_Y].values[e] / dx, truth[S.SHIFT_X].values[e] / dx)
        if extra_shift is not None:
            shift = (shift[0] + extra_shift[e][0], shift[1] + extra_shift[e][1])
        errs.append(nrmse_after_phase(epie.fourier_shift(out[S.OBJECT].values[e], shift), tr[e], cov))
    return np.array(errs)

def best_shift_nrmse(out, truth, cov=None):
    """NRMSE minimised over an extra sub-pixel shift per energy (fairness check)."""
    from scipy.optimize import minimize
    res = []
    for e in range(out.sizes[S.ENERGY]):
        o1 = out.isel({S.ENERGY: slice(e, e + 1)}); t1 = truth.isel({S.ENERGY: slice(e, e + 1)})
        c1 = cov
        f = lambda s: nrmse(o1, t1, c1, [tuple(s)])[0]
        r = minimize(f, [0.0, 0.0], method="Nelder-Mead", options=dict(xatol=1e-3, fatol=1e-7))
        res.append((r.fun, r.x))
    return res

def run(raw, **kw):
    t = time.time()
    base = dict(iterations=200, kkr=False, progress=False)
    base.update(kw)
    out = reconstruct(raw, **base)
    return out, time.time() - t
