"""Cramér–Rao bound of the object (probes known) for the coherent twin and the 3-mode data, Poisson noise.

Fisher information F = Σ_k,q (∂λ/∂θ)(∂λ/∂θ)ᵀ / λ, θ = (Re O, Im O) of the simulator's native object
array (nearest placement: every patch is a crop). Hutchinson estimate of tr_R F⁻¹ on the coverage R,
projected CG (global-phase null vector i·O removed). CRB-NRMSE = sqrt(tr_R F⁻¹)/‖t − 1‖_R.
"""
import sys, pickle, os; sys.path.insert(0, "/tmp/modes_exp")
import numpy as np, scipy.fft as sfft
from ptyxr.simulate import forward
import ptyxr.simulate as sim
CAP = "/tmp/modes_exp/crb_capture.pkl"
if not os.path.exists(CAP):
    cap = []
    orig = forward.object_patches
    def op(mu_t, phase, origin, master_pixel, position_y, position_x, pixel_size, n, drift=(0.0, 0.0), placement="nearest", background=None):
        iy, ix = forward.nearest_indices(position_y, pixel_size), forward.nearest_indices(position_x, pixel_size)
        jy = np.arange(iy.min() - n // 2, iy.max() - n // 2 + n); jx = np.arange(ix.min() - n // 2, ix.max() - n // 2 + n)
        maps = forward.sample(np.stack([mu_t, phase]), origin, master_pixel, jy[:, None] * pixel_size - drift[0], jx[None, :] * pixel_size - drift[1])
        native = np.exp(-maps[0] + 1j * maps[1])
        cap.append((native, iy - n // 2 - jy[0], ix - n // 2 - jx[0]))
        return orig(mu_t, phase, origin, master_pixel, position_y, position_x, pixel_size, n, drift, placement, background)
    forward.object_patches = op
    raw, truth = sim.demo_dataset("small", seed=0, progress=False, **sim.REALISM["probe_modes"])
    pickle.dump((cap, truth["true_probe_modes"].values, raw["intensity"].values[-2:]), open(CAP, "wb"))
cap, modes_all, inten = pickle.load(open(CAP, "rb"))
e = int(sys.argv[1]) if len(sys.argv) > 1 else -1
nprobe = int(sys.argv[2]) if len(sys.argv) > 2 else 16
native, ry, rx = cap[e]
modes = modes_all[:, e].astype(np.complex128)
n = modes.shape[-1]
tot = np.sum(np.abs(modes) ** 2)
coherent = (modes[0] / np.linalg.norm(modes[0]) * np.sqrt(tot))[None]  # twin: the coherent probe, same photons
# twin's probe: the simulator's coherent probe = modes before splitting; rebuild: mode 0 direction is P itself
H, W = native.shape
rows = ry[:, None, None] + np.arange(n)[None, :, None]; cols = rx[:, None, None] + np.arange(n)[None, None, :]
def illum(P):
    s = np.zeros((H, W)); 
    for k in range(len(ry)):
        s[ry[k]:ry[k]+n, rx[k]:rx[k]+n] += np.sum(np.abs(P) ** 2, axis=0)
    return s
def setup(P):
    psi = P[None] * native[rows, cols][:, None]           # (S, K, n, n)
    Psi = sfft.fft2(psi, norm="ortho", workers=2)
    lam = np.sum(np.abs(Psi) ** 2, axis=1)                # (S, n, n)
    return Psi, lam
def fisher(P, Psi, lam, v):
    dpsi = P[None] * v[rows, cols][:, None]
    dPsi = sfft.fft2(dpsi, norm="ortho", workers=2)
    dlam = 2 * np.sum((np.conj(Psi) * dPsi).real, axis=1)
    w = dlam / np.maximum(lam, 1e-12)
    g = sfft.ifft2(w[:, None] * Psi, norm="ortho", workers=2)
    g = 2 * np.sum(np.conj(P)[None] * g, axis=1)          # (S, n, n)
    out = np.zeros((H, W), complex)
    np.add.at(out, (rows, cols), g)
    return out
def solve(P, Psi, lam, b, mask, v0, tol=1e-6, maxit=2000):
    proj = lambda x: (x - v0 * (np.vdot(v0, x).real / np.vdot(v0, v0).real)) * mask
    x = np.zeros_like(b); r = proj(b); p = r.copy(); rr = np.vdot(r, r).real; b0 = np.sqrt(rr)
    for i in range(maxit):
        Ap = proj(fisher(P, Psi, lam, p))
        a = rr / np.vdot(p, Ap).real
        x += a * p; r -= a * Ap; rn = np.vdot(r, r).real
        if np.sqrt(rn) < tol * b0: break
        p = r + (rn / rr) * p; rr = rn
    return x, i
# parameters: pixels with illumination > 1e-3 of max under either probe set; metric region R: twin coverage (0.1)
il1, il3 = illum(coherent), illum(modes)
mask = ((il1 > 1e-3 * il1.max()) | (il3 > 1e-3 * il3.max())).astype(float)
R = il1 > 0.1 * il1.max()
v0 = 1j * native * mask
norm_t = np.linalg.norm(native[R] - 1)
print(f"energy {e}: params {int(mask.sum())} px, R {R.sum()} px, ||t-1||_R {norm_t:.3f}, photons/frame {tot:.3g}")
Ps = {"twin": coherent, "K3": modes}
pre = {k: setup(P) for k, P in Ps.items()}
# sanity: model λ vs the simulated (noisy) frames' mean counts
print("mean counts model twin/K3:", pre["twin"][1].mean(), pre["K3"][1].mean(), "data K3:", inten[-1 if e == -1 else 0].mean())
rng = np.random.default_rng(1)
acc = {k: [] for k in Ps}
for j in range(nprobe):
    z = (rng.choice([-1.0, 1.0], size=(H, W)) + 1j * rng.choice([-1.0, 1.0], size=(H, W))) / np.sqrt(2) * R
    z = z - v0 * (np.vdot(v0, z).real / np.vdot(v0, v0).real)
    for k, P in Ps.items():
        x, nit = solve(P, *pre[k], z, mask, v0)
        acc[k].append(np.vdot(z * R, x).real)
    t = {k: np.mean(v) for k, v in acc.items()}
    print(f"probe {j+1}: CRB-NRMSE twin {np.sqrt(t['twin'])/norm_t:.5f} K3 {np.sqrt(t['K3'])/norm_t:.5f} ratio {np.sqrt(t['K3']/t['twin']):.3f} (cg its {nit})", flush=True)
