"""Variant: real-space support for the modes (Σ_m|P_m|² or |P_0|² above t·max, dilated) after each probe update."""
import sys; sys.path.insert(0, "/tmp/modes_exp")
from common import *
from scipy import ndimage
from ptyxr.reconstruct import modes as M, particle
orig = M.orthogonalise
CFG = dict(t=1e-3, dil=2, which="total", weak_only=False)
def ortho(probe):
    pw = orig(probe)
    for e in range(probe.shape[0]):
        ref = np.sum(np.abs(probe[e]) ** 2, axis=0) if CFG["which"] == "total" else np.abs(probe[e, 0]) ** 2
        sup = ref > CFG["t"] * ref.max()
        if CFG["dil"]:
            sup = ndimage.binary_dilation(sup, iterations=CFG["dil"])
        lo = 1 if CFG["weak_only"] else 0
        probe[e, lo:, ~sup] = 0
    return pw
M.orthogonalise = ortho
if __name__ == "__main__":
    it = int(sys.argv[1])
    raw, truth = data(); traw, ttruth = data(modes=False)
    tw, _ = run(traw, iterations=it); a = nrmse(tw, ttruth)
    tm = np.moveaxis(truth[S.TRUE_PROBE_MODES].values, 0, 1)
    for e in range(2):
        tot = np.sum(np.abs(tm[e])**2, axis=0)
        for t in (1e-2, 1e-3, 1e-4):
            s = tot > t * tot.max()
            print(f"E{e} t={t}: support {s.sum()} px keeps power per mode", (np.sum(np.abs(tm[e][:, s])**2, axis=-1)/np.sum(np.abs(tm[e])**2, axis=(-2,-1))).round(5))
    for spec in sys.argv[2:]:
        CFG.update(eval(f"dict({spec})"))
        o, t = run(raw, iterations=it, probe_modes=3); c = nrmse(o, truth)
        print(f"it={it} {CFG}: K3 {c.mean():.5f} ratio {c.mean()/a.mean():.4f} twincov {nrmse(o, truth, cov=tw[S.COVERAGE].values).mean()/a.mean():.4f} fr {o[S.PROBE_MODE_FRACTION].values[0].round(3)} {t:.0f}s", flush=True)
