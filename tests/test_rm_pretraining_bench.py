import pytest


@pytest.mark.slow
def test_rm_pretraining_smoke_reports_each_checkpoint_with_an_interval():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import rm_pretraining

    rows = rm_pretraining.main(["--preset", "tiny", "--steps", "2", "3", "--seeds", "0", "1", "--ensemble"])
    assert [(r.get("seed"), r["steps"]) for r in rows] == [(0, 2), (0, 3), (1, 2), (1, 3), (None, 3)]
    for row in rows:
        low, high = row["val_gold_accuracy_ci"]
        assert 0.0 <= low < row["val_gold_accuracy"] < high <= 1.0, row  # a proportion's interval, not [0, 1]
        assert row["val_pairs"] == 117 and row["train_pairs"] > 1000
    first = rm_pretraining.main(["--preset", "tiny", "--steps", "1", "--first-rounds"])
    assert first[0]["train_pairs"] < 500
