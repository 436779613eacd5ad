"""The benchmark suite: fold protocols, the resumable run loop and the reports (`run_benchmark.py`).

from evaluation import load_metadata, make_folds
meta, notes = load_metadata(["emodb", "ravdess"], "datasets")
plan = make_folds("speaker-cv", meta, n_folds=5, seed=42)
plan.table().to_csv("folds.csv", index=False)
"""

from .folds import PROTOCOLS, Fold, FoldError, FoldPlan, load_metadata, make_folds

__all__ = ["PROTOCOLS", "Fold", "FoldError", "FoldPlan", "load_metadata", "make_folds"]
