import pytest


@pytest.mark.slow  # two repeats of three strategies on tiny: about 15 s on 2 cores
def test_active_learning_smoke_pairs_the_strategies_and_reports_intervals():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import active_learning

    result = active_learning.main(["--smoke"])
    assert result["labels"] == [16, 24] and result["held_out_pairs"] == 139
    curves = result["curves"]
    # Paired design: random and uncertainty start each repeat from the same seed set and the same fit.
    assert [c[0] for c in curves["random"]] == [c[0] for c in curves["uncertainty"]]
    for row in result["strategies"].values():
        assert len(row["mean"]) == 2 and all(
            low <= m <= high for m, (low, high) in zip(row["mean"], row["ci95"])
        )
    gain = result["strategies"]["uncertainty"]["gain_over_random_last"]
    expected = sum(u[-1] - r[-1] for u, r in zip(curves["uncertainty"], curves["random"])) / 2
    assert gain == pytest.approx(expected, abs=1e-4)


def test_t_interval_matches_a_hand_computation():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from active_learning import t_interval

    # mean 0.6, sample sd 0.0913, n = 4: half-width t(0.975, 3) * sd / sqrt(4), t(0.975, 3) = 3.1824
    low, high = t_interval([0.5, 0.55, 0.65, 0.7])
    half = 3.182446 * 0.0912871 / 2
    assert low == pytest.approx(0.6 - half, abs=1e-4) and high == pytest.approx(0.6 + half, abs=1e-4)
    assert t_interval([0.7]) == (0.7, 0.7)
