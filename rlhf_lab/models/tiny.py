"""The `tiny` preset: a config-made GPT-2 policy and reward model with a tokenizer built in code.

Everything here is deterministic given a seed and needs no download, so tests and CPU demos
run in milliseconds per step.

    >>> from rlhf_lab.models.tiny import tiny_tokenizer, tiny_policy
    >>> tok = tiny_tokenizer()
    >>> model = tiny_policy(tok, seed=0)
"""

from __future__ import annotations

import functools
from importlib import resources

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast

from rlhf_lab import bundled

SPECIAL_TOKENS = ["<|pad|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]
# Big enough that nearly every word of the bundled tasks is one token (1.15 tokens a word in the
# positive_review demonstrations, 1.6 in helpful_harmless's, punctuation included). A 2-layer model then
# samples whole words; with 1,024 merges learnt from a few sentences it had to spell words from pieces
# and wrote half-words ("a det ect ive in a small f is hing").
TINY_VOCAB_SIZE = 2048

# The same turn structure as ChatML, with short markers so tiny models see more content per token.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}<|eos|>{% endif %}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

TINY_MODEL_SHAPE = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 256}


def _corpus_lines() -> list[str]:
    """The tokenizer's training text: a few general sentences plus the bundled tasks' *train* split.

    The train prompts, their demonstrations and the SmolLM2 answers sampled for them; never the
    test prompts or the held-out answers, which the labs grade on.
    """
    text = resources.files("rlhf_lab.data").joinpath("tiny_corpus.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    for task in sorted(bundled.TASKS):
        lines += [row["prompt"] for row in bundled.load_prompts(task, "train")]
        lines += [f"{row['prompt']} {row['response']}" for row in bundled.load_demos(task)]
        lines += [response for row in bundled.load_samples(task) for response in row["responses"]]
    return lines


@functools.lru_cache(maxsize=1)
def _trained_tokenizer_json() -> str:
    # Byte-level BPE: any text encodes (no unknown token), and merges learnt from the bundled
    # corpus keep task words to one or two tokens. BPE training is deterministic for a fixed corpus.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_lines(), trainer=trainer)
    return tok.to_str()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh fast tokenizer (byte-level BPE, `TINY_VOCAB_SIZE` tokens) with a chat template, pad != eos."""
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_tokenizer_json()),
        pad_token="<|pad|>",
        eos_token="<|eos|>",
        bos_token="<|eos|>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
        padding_side="left",
        model_max_length=TINY_MODEL_SHAPE["n_positions"],
    )
    tok.chat_template = TINY_CHAT_TEMPLATE
    return tok


def tiny_config(tokenizer: PreTrainedTokenizerFast, **overrides) -> GPT2Config:
    shape = {**TINY_MODEL_SHAPE, **overrides}
    return GPT2Config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shape,
    )


def _seeded_init(build, seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def tiny_policy(tokenizer: PreTrainedTokenizerFast, seed: int = 0, **overrides) -> GPT2LMHeadModel:
    """A 2-layer, width-64 GPT-2 language model with weights drawn from `seed`."""
    config = tiny_config(tokenizer, **overrides)
    model = _seeded_init(lambda: GPT2LMHeadModel(config), seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def tiny_reward_model(
    tokenizer: PreTrainedTokenizerFast, seed: int = 0, **overrides
) -> GPT2ForSequenceClassification:
    """The same shape with a scalar head read at the last non-pad token (GPT-2 pools that way)."""
    config = tiny_config(tokenizer, num_labels=1, **overrides)
    return _seeded_init(lambda: GPT2ForSequenceClassification(config), seed)
