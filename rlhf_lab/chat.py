"""Turning (prompt, response) into model text, the same way in every stage.

    >>> from rlhf_lab.chat import format_prompt
    >>> format_prompt(tokenizer, "How do I boil an egg?")   # chat template + generation prompt

Tokenizers with a chat template (SmolLM2's ChatML, the tiny preset's) use it; others fall back
to a plain "User:/Assistant:" layout. SFT, reward models, PPO and DPO all call these helpers, so
the policy is trained, scored and sampled on exactly the text layout it will see.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

PLAIN_PROMPT = "User: {prompt}\nAssistant:"


def _has_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str | list[dict[str, str]]) -> str:
    """The text a causal LM continues to answer `prompt` (a string or a list of chat messages)."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    if _has_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n".join(
        PLAIN_PROMPT.format(prompt=m["content"]) if m["role"] == "user" else m["content"] for m in messages
    )


def response_suffix(tokenizer: PreTrainedTokenizerBase) -> str:
    """What ends an assistant turn in training text: the EOS token (so the model learns to stop)."""
    return tokenizer.eos_token or ""


def format_conversation(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str) -> str:
    """Prompt plus response as one training text ending with EOS."""
    return format_prompt(tokenizer, prompt) + response + response_suffix(tokenizer)
