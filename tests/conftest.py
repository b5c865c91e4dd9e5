import os

import pytest
import torch

# Two busy cores: one torch thread is much faster than two (rlhf_lab.device.default_cpu_threads).
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_tok():
    from rlhf_lab.models.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture()
def tiny_lab(tmp_path):
    from rlhf_lab import Lab

    return Lab.from_preset("tiny", store=tmp_path / "labels.sqlite")
