import sys; sys.path.insert(0, "/tmp/modes_exp")
from var2 import *
orig_init = M.ModeEPIE.__init__
W = [1.0]
def init(self, *a, **k):
    orig_init(self, *a, **k); self.mode_beta[1:] = W[0]
M.ModeEPIE.__init__ = init
for spec in sys.argv[1:]:
    kw = eval(f"dict({spec})"); W[0] = kw.pop("wb", 1.0)
    if "frac" in kw:
        M.INITIAL_MODE_FRACTION = kw.pop("frac")
    evaluate(f"{spec}", **kw)
    M.INITIAL_MODE_FRACTION = 0.1
