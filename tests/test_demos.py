"""Loading and validating demonstrations."""

import json

import pandas as pd
import pytest

from rlhf_lab.demonstrations import Demo, DemoError, load_demos, save_demos


def test_list_of_dicts_tuples_and_completion_alias():
    demos = load_demos(
        [
            {"prompt": "Say hi.", "response": "Hi!"},
            ("Say bye.", "Bye!"),
            {"prompt": "Count.", "completion": "1 2 3"},
        ]
    )
    assert demos == [Demo("Say hi.", "Hi!"), Demo("Say bye.", "Bye!"), Demo("Count.", "1 2 3")]


def test_chat_messages_split_into_prompt_turns_and_answer():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "Hi!"},
    ]
    (demo,) = load_demos([{"messages": messages}])
    assert demo.prompt == messages[:2] and demo.response == "Hi!"
    assert demo.to_record() == {"messages": messages}


def test_dataframe_and_jsonl_round_trip(tmp_path):
    frame = pd.DataFrame({"prompt": ["a?", "b?"], "response": ["A.", "B."]})
    demos = load_demos(frame)
    path = save_demos(demos + [Demo([{"role": "user", "content": "c?"}], "C.")], tmp_path / "d.jsonl")
    assert load_demos(path) == demos + [Demo([{"role": "user", "content": "c?"}], "C.")]
    assert load_demos(str(path))[0] == Demo("a?", "A.")


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [{"prompt": "ok", "response": "ok"}, {"prompt": "x", "answer": "y"}],
            r"row 1: missing column 'response'",
        ),
        ([{"prompt": "ok", "response": "   "}], r"row 0: response is empty"),
        ([{"prompt": None, "response": "y"}], r"row 0: prompt is missing"),
        ([{"prompt": 3, "response": "y"}], r"row 0: prompt must be text"),
        ([{"prompt": "x", "response": "y" * 200_001}], r"row 0: response is 200,001 characters"),
        (
            [{"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "hi"}]}],
            r"row 0: the last",
        ),
        (
            [{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]}],
            r"unknown role 'bot'",
        ),
        ([], r"No demonstrations"),
        ({"prompt": "x", "response": "y"}, r"wrap it in a list"),
    ],
)
def test_bad_rows_are_named(rows, message):
    with pytest.raises(DemoError, match=message):
        load_demos(rows)


def test_dataframe_nan_names_the_row():
    frame = pd.DataFrame({"prompt": ["a", "b"], "response": ["A", None]})
    with pytest.raises(DemoError, match="row 1: response is missing"):
        load_demos(frame)


def test_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n\n{not json}\n")
    with pytest.raises(DemoError, match="line 3 of bad.jsonl: not valid JSON"):
        load_demos(path)
    with pytest.raises(DemoError, match="No such demonstrations file"):
        load_demos(tmp_path / "missing.jsonl")


def test_length_limit_can_be_raised():
    assert load_demos([{"prompt": "x", "response": "y" * 50}], max_chars=100)[0].response == "y" * 50
    with pytest.raises(DemoError, match="limit 10"):
        load_demos([{"prompt": "x", "response": "y" * 50}], max_chars=10)


def test_binary_and_deeply_nested_files_are_reported(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b'{"prompt": "a", "response": "b"}\n\xff\xfe\x00\n')
    with pytest.raises(DemoError, match="line 2 of bin.jsonl: not UTF-8"):
        load_demos(path)
    path.write_text("[" * 100_000 + "\n")
    with pytest.raises(DemoError, match="line 1 of bin.jsonl"):
        load_demos(path)
