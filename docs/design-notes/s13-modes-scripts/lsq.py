"""Variant: ePIE object sweep (probe fixed) + one global probe update per iteration from all positions."""
import sys; sys.path.insert(0, "/tmp/modes_exp")
from common import *
import scipy.fft as sfft
from ptyxr.reconstruct import modes as M

def global_probe_update(self, obj, probe, beta, reg, mode="lsq"):
    n = self.n
    n_e, K = probe.shape[:2]
    for e in range(n_e):
        offs = self.offsets[e]
        valid_k = np.flatnonzero(self.amplitudes[e, :, 0, 0] == self.amplitudes[e, :, 0, 0]) # all
        pat = np.stack([obj[e, oy:oy + n, ox:ox + n] for oy, ox in offs])  # (S, n, n)
        psi = probe[e][None] * pat[:, None]  # (S, K, n, n)
        F = sfft.fft2(psi, workers=2)
        mag = np.sqrt(np.sum(np.abs(F) ** 2, axis=1))
        amp = self.amplitudes[e]
        valid = amp >= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            fac = np.where(valid & (mag > 0), amp / mag - 1.0, 0.0)
        dpsi = sfft.ifft2(F * fac[:, None], workers=2)
        num = np.sum(np.conj(pat)[:, None] * dpsi, axis=0)  # (K, n, n)
        den = np.sum(np.abs(pat) ** 2, axis=0)
        if mode == "lsq":
            step = num / (den + reg * den.max())[None]
        else:  # "avg": ePIE-like normaliser max|O|^2 * S
            step = num / (den.max())
        probe[e] += (beta * step).astype(np.complex64)

orig_iter = M.ModeEPIE.iteration
CFG = dict(beta=1.0, reg=0.0, mode="lsq", hybrid=0.0)
def iteration(self, obj, probe, order, update_probe):
    b = self.beta
    if CFG["hybrid"] == 0.0:
        err = orig_iter(self, obj, probe, order, False)
    else:
        self.beta = b * CFG["hybrid"]
        err = orig_iter(self, obj, probe, order, update_probe)
        self.beta = b
    if update_probe:
        global_probe_update(self, obj, probe, CFG["beta"], CFG["reg"], CFG["mode"])
    return err

if __name__ == "__main__":
    it = int(sys.argv[1]); 
    raw, truth = data(); traw, ttruth = data(modes=False)
    tw, _ = run(traw, iterations=it); a = nrmse(tw, ttruth)
    M.ModeEPIE.iteration = iteration
    for spec in sys.argv[2:]:
        CFG.update(eval(f"dict({spec})"))
        o, t = run(raw, iterations=it, probe_modes=3); c = nrmse(o, truth)
        print(f"it={it} {CFG}: K3 {c.mean():.5f} ratio {c.mean()/a.mean():.4f} twincov {nrmse(o, truth, cov=tw[S.COVERAGE].values).mean()/a.mean():.4f} fr {o[S.PROBE_MODE_FRACTION].values[0].round(3)} {t:.0f}s", flush=True)
