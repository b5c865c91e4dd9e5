"""Child process for the crash-safety and concurrent-writer tests of the preference store.

    python tests/helpers_store_writer.py DB_PATH WRITER_NAME N_LABELS [GO_FILE [PAUSE_S]]

Adds N labels (prompt "<writer> #<i>") one `add` at a time and prints each returned id as soon as
`add` returns, so the parent knows which labels the store has promised to keep. With GO_FILE it
prints "ready" once the store is open and waits for that file to exist, so that several writers
start together; PAUSE_S between labels lets their writes interleave, as people's clicks do.
"""

import os
import sys
import time
from pathlib import Path

# Run as a script from tests/: make the checkout importable even without an editable install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlhf_lab.store import PreferenceStore  # noqa: E402


def main() -> None:
    path, writer, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    store = PreferenceStore(path)
    if len(sys.argv) > 4:
        print("ready", flush=True)
        while not os.path.exists(sys.argv[4]):
            time.sleep(0.001)
    for i in range(n):
        label_id = store.add(
            f"{writer} #{i}", [f"good answer {i}", f"bad answer {i}"], "A", annotator=writer, note=str(i)
        )
        print(label_id, flush=True)
        if pause:
            time.sleep(pause)
    store.close()


if __name__ == "__main__":
    main()
