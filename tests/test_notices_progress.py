"""Plain-language notices (no source line) and progress bars that appear only on slow calls."""

import io
import subprocess
import sys
import threading
import warnings

import pytest

from rlhf_lab import notices, progress
from rlhf_lab.notices import KLWarning, LabNotice
from rlhf_lab.rl.normalization import FlatRewardWarning


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_notice_prints_one_plain_line_without_the_source_line():
    out = _run(
        "import warnings\n"
        "from rlhf_lab.notices import KLWarning, LabNotice\n"
        "warnings.warn('the policy moved far', KLWarning)\n"
        "warnings.warn('label more pairs', LabNotice)\n"
        "warnings.warn('an ordinary warning', UserWarning)\n"
    )
    lines = out.stderr.splitlines()
    assert lines[:2] == ["KL alarm: the policy moved far", "Note: label more pairs"]
    # other warnings keep Python's format (path:line: Category: message)
    assert lines[2:] == ["<string>:5: UserWarning: an ordinary warning"]


def test_notices_stay_ordinary_warnings():
    assert issubclass(KLWarning, RuntimeWarning) and issubclass(FlatRewardWarning, LabNotice)
    with pytest.warns(RuntimeWarning, match="moved"):
        warnings.warn("moved", KLWarning, stacklevel=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KLWarning)
        with pytest.raises(KLWarning):
            warnings.warn("moved", KLWarning, stacklevel=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore", RuntimeWarning)  # what lab 03 does around its beta = 0 run
        warnings.warn("moved", KLWarning, stacklevel=1)
    assert caught == []


def test_the_display_hook_writes_the_label_and_message_only():
    stream = io.StringIO()
    notices._show(KLWarning("far"), KLWarning, "/x/stage.py", 231, stream)
    assert stream.getvalue() == "KL alarm: far\n"


def test_a_fast_call_draws_no_bar_and_a_slow_one_does(monkeypatch):
    fast = progress.progress_bar(10, "fast")
    fast.update(10)
    fast.close()
    assert not fast.shown
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    slow = progress.progress_bar(10, "slow", file=io.StringIO())
    slow.update(3)
    slow.set_postfix(loss="0.1")
    assert slow.shown and slow._bar.n == 3
    slow.close(finished=True)  # stopped early: closed as done, not as failed
    assert slow._bar.total == 3
    assert not progress.progress_bar(10, "never", show=False, file=io.StringIO()).shown


def test_bars_are_off_in_background_threads_and_on_at_once_with_show_true():
    seen = []
    worker = threading.Thread(target=lambda: seen.append(progress.progress_bar(5, "bg")._enabled))
    worker.start()
    worker.join()
    assert seen == [False]
    bar = progress.progress_bar(5, "now", show=True, file=io.StringIO())
    bar.update(1)
    assert bar.shown
    bar.close()


def test_a_bar_opened_under_another_stays_hidden(monkeypatch):
    from tqdm import tqdm

    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    outer = progress.progress_bar(3, "rm fit", file=io.StringIO())  # open, not drawn yet
    inner = progress.progress_bar(10, "scoring", file=io.StringIO())
    inner.update(10)
    assert not inner.shown  # one bar at a time
    inner.close()
    outer.update(1)
    assert outer.shown
    outer.close()
    # a notebook's own tqdm loop hides the library's bars inside it too
    with tqdm(total=2, desc="active learning: refits", file=io.StringIO()) as loop:
        nested = progress.progress_bar(10, "scoring", file=io.StringIO())
        nested.update(10)
        assert not nested.shown
        nested.close()
        loop.update(2)
    again = progress.progress_bar(10, "scoring", file=io.StringIO())
    again.update(1)
    assert again.shown  # with nothing else open, bars show again
    again.close()
    forced = progress.progress_bar(2, "forced", show=True, file=io.StringIO())
    with tqdm(total=1, file=io.StringIO()):
        forced.update(1)  # show=True always draws
    assert forced.shown
    forced.close()


def test_wait_with_progress_waits_for_the_event(monkeypatch):
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    ended = threading.Event()
    threading.Timer(0.3, ended.set).start()
    assert not progress.wait_with_progress(ended, lambda: 1, 2, "run", timeout=0.05, poll_s=0.01)
    assert progress.wait_with_progress(ended, lambda: 1, 2, "run", poll_s=0.05) and ended.is_set()


def test_the_ai_judge_cuts_long_prompts_without_transformers_length_warning():
    from rlhf_lab.models.presets import load_policy
    from rlhf_lab.raters import ConstitutionalJudge

    model, tokenizer = load_policy("tiny")
    long = "a very long answer " * 200  # far past the tiny model's 256 positions
    ConstitutionalJudge(model, tokenizer, ["Be brief."], max_response_chars=10_000)("Hi?", long, "Hello.")
    assert "sequence-length-is-longer-than-the-specified-maximum" not in tokenizer.deprecation_warnings


def test_no_bar_is_drawn_while_silenced_even_one_asked_for_at_once():
    with progress.silenced():
        bar = progress.progress_bar(3, "quiet", show=True, file=io.StringIO())
        bar.update(3)
        assert not bar.shown
        bar.close()
    bar = progress.progress_bar(3, "loud", show=True, file=io.StringIO())  # outside again: drawn as asked
    bar.update(1)
    assert bar.shown
    bar.close()
