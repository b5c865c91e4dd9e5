"""The playground: a person's own prompt, answered by several models side by side and scored."""

import pytest

from rlhf_lab import Lab
from rlhf_lab.generation import generate
from rlhf_lab.raters import get_judge
from rlhf_lab.ui.playground import Playground

PROMPT = "Write a positive review of a heist film."


@pytest.fixture(scope="module")
def lab():
    lab = Lab.from_preset("tiny", store=":memory:")
    lab.snapshot("sft")
    return lab


def length_reward(prompts, responses):
    return [float(len(r.split())) for r in responses]


def test_every_model_answers_with_the_same_seed_and_is_scored(lab):
    play = lab.playground(reward=length_reward, gold=get_judge("positive_review"), samples=2, seed=5)
    assert list(play.models) == ["sft", "current policy"]
    rows = play.answer(PROMPT)
    assert [r["model"] for r in rows] == ["sft", "sft", "current policy", "current policy"]
    # same weights (nothing trained since the snapshot) and the same seed: the same answers
    expected = generate(
        lab.policy, lab.tokenizer, [PROMPT] * 2, seed=5, max_new_tokens=play.generate_kwargs["max_new_tokens"]
    )
    assert [r["response"] for r in rows] == expected * 2
    assert all(r["reward"] == len(r["response"].split()) and -1 <= r["gold"] <= 1 for r in rows)
    html = play.results.value
    assert (
        "SFT" in html.upper() and "CURRENT POLICY" in html.upper() and "reward +" in html and "gold " in html
    )
    second = play.answer(PROMPT)  # a new click draws new samples: the next seed
    assert [r["response"] for r in second[:2]] == generate(
        lab.policy, lab.tokenizer, [PROMPT] * 2, seed=6, max_new_tokens=play.generate_kwargs["max_new_tokens"]
    )


def test_the_button_shows_an_empty_prompt_as_one_line_and_stays_usable(lab):
    play = lab.playground()
    play.prompt.value = "   "
    play._click()
    assert "Type a prompt first" in play.status.value and play.results.value == ""
    assert not play.button.disabled
    play.prompt.value = PROMPT
    play.samples.value = 1
    play._click()
    assert play.status.value == "" and len(play.rows) == 2 and not play.button.disabled


def test_a_click_during_a_training_step_says_it_waits_for_the_step(lab):
    import threading
    import time

    from rlhf_lab.generation import model_lock

    play = Playground({"policy": lab.policy}, lab.tokenizer, samples=1, max_new_tokens=3, prompt=PROMPT)
    held, release = threading.Event(), threading.Event()

    def a_training_step():  # what a stage's step holds while it updates the policy
        with model_lock(lab.policy):
            held.set()
            release.wait(10)

    threading.Thread(target=a_training_step).start()
    held.wait(10)
    click = threading.Thread(target=play._click)
    click.start()
    deadline = time.monotonic() + 10
    while "training step" not in play.status.value and time.monotonic() < deadline:
        time.sleep(0.01)
    assert play.status.value == "Answering after the current training step ..." and play.button.disabled
    assert not play.rows  # still waiting
    release.set()
    click.join(10)
    assert play.status.value == "" and len(play.rows) == 1 and not play.button.disabled


def test_prompt_and_answers_render_as_text_not_markup(lab):
    play = Playground({"policy": lab.policy}, lab.tokenizer, samples=1, max_new_tokens=4)
    play.answer("<script>alert(1)</script> & <b>bold</b>")
    assert "<script>" not in play.results.value and "&lt;script&gt;" in play.results.value
    assert "&lt;b&gt;bold&lt;/b&gt;" in play.results.value


def test_bad_settings_are_refused_up_front(lab):
    with pytest.raises(ValueError, match="at least one model"):
        Playground({}, lab.tokenizer)
    with pytest.raises(ValueError, match="samples must be between 1 and 8"):
        Playground({"policy": lab.policy}, lab.tokenizer, samples=0)
    with pytest.raises(TypeError, match="cannot score"):
        Playground({"policy": lab.policy}, lab.tokenizer, reward=42)


def test_text_repr_names_the_models_then_shows_the_last_answers(lab):
    play = lab.playground(reward=length_reward, samples=1)
    assert (
        play._repr_mimebundle_()["text/plain"]
        == "Playground: sft, current policy; type a prompt and press Answer"
    )
    rows = play.answer(PROMPT)
    lines = play._repr_mimebundle_()["text/plain"].splitlines()
    assert lines[1] == repr(PROMPT)
    assert lines[2] == f"  sft: {rows[0]['response']!r} (reward {rows[0]['reward']:+.3f})"
