import os
import shutil
import tempfile

import pytest
import torch

# Two busy cores: one torch thread is much faster than two (rlhf_lab.device.default_cpu_threads).
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    """One cache folder (RLHF_LAB_CACHE: pre-trained reward models, converted SmolLM2 weights) for the
    whole run, shared by its pytest-xdist workers and the kernels and scripts the tests start, then
    removed: what one test pre-trains the next reuses, as a user's second run would, and no test reads
    or fills the user's ~/.cache/rlhf_lab. A test that needs a cold cache sets its own."""
    if hasattr(config, "workerinput") or "RLHF_LAB_CACHE" in os.environ:
        return  # a worker inherits the controller's folder; a caller's own folder is kept
    config._rlhf_lab_cache = tempfile.mkdtemp(prefix="rlhf-lab-test-cache-")
    os.environ["RLHF_LAB_CACHE"] = config._rlhf_lab_cache


def pytest_unconfigure(config):
    folder = getattr(config, "_rlhf_lab_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        del os.environ["RLHF_LAB_CACHE"]


@pytest.fixture(scope="session")
def tiny_tok():
    from rlhf_lab.models.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture()
def tiny_lab(tmp_path):
    from rlhf_lab import Lab

    return Lab.from_preset("tiny", store=tmp_path / "labels.sqlite")


WHOLE_LAB_IN_BROWSER = {  # tests/browser/test_labs_browser.py: test name -> its lab (None: the "name" param)
    "test_lab_run_all_draws_every_output_without_an_error": None,
    "test_lab02_run_all_label_restart_rerun_keeps_every_label": "02",
}


@pytest.hookimpl(trylast=True)  # after -m/-k deselection and the browser tests' own skips
def pytest_collection_modifyitems(config, items):
    """A lab that a browser test runs whole (Run All, then check_every_output_drawn) is not also run by
    tests/test_labs.py in the same session: the browser run checks the same things (no error, no long
    silent cell) and more. Without chromium, or when only test_labs.py is selected, test_labs.py runs
    every lab."""
    in_browser = {
        WHOLE_LAB_IN_BROWSER[item.originalname] or item.callspec.params["name"]
        for item in items
        if item.originalname in WHOLE_LAB_IN_BROWSER and not item.get_closest_marker("skip")
    }
    for item in items:
        if (
            item.originalname == "test_lab_runs_top_to_bottom"
            and item.callspec.params["path"].name[:2] in in_browser
        ):
            item.add_marker(pytest.mark.skip(reason="the browser tests Run All this lab and check the same"))


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown (and unused) without it
def pytest_xdist_make_scheduler(config, log):
    """Under `-n N` (`--dist load`, or `loadscope` as scripts/test.sh asks), a browser test module is one
    unit, run on one worker in order: its tests share a page and a kernel (module-scoped fixtures) and
    some build on the one before. Every other test is a unit of its own, so the workers stay evenly
    loaded. (xdist's own `loadgroup` marks cannot do this with pytest 9.2, whose node ids no longer take
    xdist's group suffix.)"""
    if config.getvalue("dist") not in ("load", "loadscope"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class BrowserModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.startswith("tests/browser/") else nodeid

    return BrowserModulesTogether(config, log)
