import sys; sys.path.insert(0, "/tmp/modes_exp")
from common import *
import common
def nrmse_scale(out, truth):
    dx = out[S.Y].attrs[S.ATTR_PIXEL_SIZE]
    tr = truth[S.OBJECT].interp({S.Y: out[S.Y], S.X: out[S.X]}, method="nearest").values
    cov = out[S.COVERAGE].values; r = []
    for e in range(out.sizes[S.ENERGY]):
        sh = (truth[S.SHIFT_Y].values[e]/dx, truth[S.SHIFT_X].values[e]/dx)
        a = epie.fourier_shift(out[S.OBJECT].values[e], sh)[cov]; b = tr[e][cov]
        c = np.vdot(a, b) / np.vdot(a, a)
        r.append((np.linalg.norm(c * a - b) / np.linalg.norm(b - 1), abs(c) - 1, np.linalg.norm(b)/np.linalg.norm(b-1)))
    return np.array(r)
if __name__ == "__main__":
  raw, truth = data(); traw, ttruth = data(modes=False)
  for it in [int(x) for x in sys.argv[1].split(",")]:
    tw, _ = run(traw, iterations=it); k3, _ = run(raw, iterations=it, probe_modes=3)
    a, b = nrmse(tw, ttruth), nrmse(k3, truth)
    sa, sb = nrmse_scale(tw, ttruth), nrmse_scale(k3, truth)
    print(f"it={it}: phase-only twin {a.round(5)} K3 {b.round(5)} ratio {b.mean()/a.mean():.3f} | complex scale twin {sa[:,0].round(5)} K3 {sb[:,0].round(5)} ratio {sb[:,0].mean()/sa[:,0].mean():.3f} | |c|-1 twin {sa[:,1].round(5)} K3 {sb[:,1].round(5)} ||t||/||t-1|| {sa[:,2].round(1)}", flush=True)
