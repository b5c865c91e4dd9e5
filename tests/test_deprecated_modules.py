"""The old module names still work for one release, and say where their code went."""

import json
import subprocess
import sys

# old module -> the module that now holds its code
RENAMED = {
    "rlhf_lab.datasets": "rlhf_lab.bundled",
    "rlhf_lab.demos": "rlhf_lab.demonstrations",
    "rlhf_lab.pairs": "rlhf_lab.reward.pairs",
    "rlhf_lab.rm_eval": "rlhf_lab.reward.evaluation",
    "rlhf_lab.stages.reward_model": "rlhf_lab.reward",
    "rlhf_lab.ui.attribution": "rlhf_lab.attribution",
    "rlhf_lab.ui.queue": "rlhf_lab.active",
}

# Runs in a fresh interpreter: a module imported earlier in the test session would not warn again.
PROBE = """
import json, sys, warnings
report = {}
for old, new in json.loads(sys.argv[1]).items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(f"import {old} as module")  # the importing line is this exec's "<string>"
    homes = [m for name, m in sys.modules.items() if name == new or name.startswith(new + ".")]
    report[old] = {
        "warnings": [(w.category.__name__, str(w.message), w.filename) for w in caught],
        "not_the_new_object": [
            name for name in module.__all__
            if not any(getattr(home, name, None) is getattr(module, name) for home in homes)
        ],
    }
print(json.dumps(report))
"""


def test_old_module_names_warn_and_re_export_the_new_objects():
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(RENAMED)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for old, new in RENAMED.items():
        ours = [w for w in report[old]["warnings"] if w[0] == "DeprecationWarning" and old in w[1]]
        assert len(ours) == 1, (old, report[old]["warnings"])
        category, message, filename = ours[0]
        assert f"import from {new}" in message
        assert filename == "<string>", f"{old}'s warning points at {filename}, not at the importing line"
        assert report[old]["not_the_new_object"] == [], old
