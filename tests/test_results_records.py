"""The committed record of every change tried (ROUNDS.md's evidence) stays machine-readable."""

import csv
from pathlib import Path

TRIED_CHANGES = Path(__file__).resolve().parents[1] / "benchmarks/results/dev-speaker-cv/tried-changes.csv"
COLUMNS = ["variant", "model", "corpus", "fold", "test_uar", "extra_args"]


def test_every_tried_change_is_one_row_of_the_six_columns():
    with TRIED_CHANGES.open(newline="") as stream:
        header, *rows = csv.reader(stream)
    assert header == COLUMNS
    # A comma in an unquoted note splits it into a seventh field, which pandas refuses to read.
    malformed = [(number, row[:2]) for number, row in enumerate(rows, start=2) if len(row) != len(COLUMNS)]
    assert not malformed, f"rows without exactly {len(COLUMNS)} fields (line, variant): {malformed[:5]}"
    for number, (variant, model, corpus, fold, test_uar, _) in enumerate(rows, start=2):
        assert variant and model and corpus, f"line {number}: empty variant, model or corpus"
        assert int(fold) >= 1, f"line {number}: fold {fold}"
        assert 0.0 <= float(test_uar) <= 1.0, f"line {number}: test_uar {test_uar}"
