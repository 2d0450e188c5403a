import sys; sys.path.insert(0, "/tmp/modes_exp")
from var2 import *
evaluate("noise-free (1e12) default", over={"photons": 1e12})
raw, truth = data()
true_modes = np.ascontiguousarray(np.moveaxis(truth[S.TRUE_PROBE_MODES].values, 0, 1)).astype(np.complex64)
M.initial_modes = lambda probe, k, fraction=None: true_modes.copy()
evaluate("true modes fixed (update_probe=False)", update_probe=False)
evaluate("true modes start, refined")
