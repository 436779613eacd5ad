import sys, pandas as pd, numpy as np
for name in sys.argv[2:]:
    d = pd.read_csv(f"/work/runs/s32/ccurve-{sys.argv[1]}-{name}-head-logreg.csv")
    rules = {}
    for (s, run), g in d.groupby(["split", "run"], sort=False):
        g = g.sort_values("C")
        best = g.val_uar.max()
        rules.setdefault("uar_small", []).append(g[g.val_uar == best].iloc[0].test_uar)
        rules.setdefault("uar_large", []).append(g[g.val_uar == best].iloc[-1].test_uar)
        rules.setdefault("uar_mid", []).append(g[g.val_uar == best].iloc[(len(g[g.val_uar == best]) - 1) // 2].test_uar)
        rules.setdefault("logloss", []).append(g.loc[g.val_ll.idxmin()].test_uar)
        rules.setdefault("uar_then_ll", []).append(g[g.val_uar == best].sort_values("val_ll").iloc[0].test_uar)
        rules.setdefault("oracle", []).append(g.test_uar.max())
        for c in sorted(g.C.unique()):
            rules.setdefault(f"C={c:g}", []).append(g[g.C == c].iloc[0].test_uar)
    base = np.array(rules["uar_small"])
    for r, v in rules.items():
        v = np.array(v); dd = v - base
        print(f"{name:10s} {r:12s} {v.mean():.3f} ± {v.std(ddof=1):.3f} {dd.mean():+.3f} {(dd>0).sum()}/{(dd<0).sum()}")
