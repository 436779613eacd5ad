"""Throwaway: per fold and C, the head's (LR) validation UAR, validation log-loss, grouped-CV UAR on train, test UAR."""
import sys, json, warnings
from pathlib import Path
import numpy as np, pandas as pd
sys.path.insert(0, "/work/main")
from benchmarks.functionals_head import load_folds, impute
from evaluation.opensmile_baseline import make_pipeline, C_GRID
from sklearn.metrics import balanced_accuracy_score, log_loss
from sklearn.model_selection import GroupKFold
warnings.filterwarnings("ignore")
name, feat, clf, kind = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
GRID = C_GRID if sys.argv[5] == "coarse" else tuple(10 ** (k / 2) for k in range(-10, 3))
z = np.load(f"/work/runs/s32/inputs-{kind}-{name}.npz")
files = list(z["files"]); pos = {f: i for i, f in enumerate(files)}; labels = z["labels"]
X = {"head": z["head"], "compare": z["compare"].astype(np.float64)}[feat]
out = []
for s in (42, 7, 8, 9):
    table, folds = load_folds(Path(f"/work/runs/s31/folds/{name}-{s}"))
    classes = next(iter(folds.values()))["classes"]
    for run in sorted(folds):
        m = table[table.run == run]
        sp = {k: np.array([pos[f] for f in m[m.split == k].file]) for k in ("train", "validation", "test")}
        spk = np.array([f.split("/")[0] for f in m[m.split == "train"].file])  # placeholder, replaced below
        x = impute(X, sp["train"])
        tr_files = list(m[m.split == "train"].file)
        for c in GRID:
            p = make_pipeline(clf, c, 0).fit(x[sp["train"]], labels[sp["train"]])
            row = {"split": s, "run": run, "C": c,
                   "val_uar": balanced_accuracy_score(labels[sp["validation"]], p.predict(x[sp["validation"]])),
                   "test_uar": balanced_accuracy_score(labels[sp["test"]], p.predict(x[sp["test"]]))}
            if clf == "logreg":
                row["val_ll"] = log_loss(labels[sp["validation"]], p.predict_proba(x[sp["validation"]]), labels=range(len(classes)))
            out.append(row)
            print(json.dumps(row), flush=True)
pd.DataFrame(out).to_csv(f"/work/runs/s32/ccurve-{kind}-{sys.argv[5]}-{name}-{feat}-{clf}.csv", index=False)
