"""Workshop load test: N writer processes label M pairs each into one preference store.

    python bench/store_load.py                      # 30 writers x 200 labels (the workshop case)
    python bench/store_load.py --writers 4 --labels 20 --smoke

`--think-ms 100` paces each writer like a (very fast) person instead of a tight loop.
Prints one JSON line: labels expected/present/duplicates, write latency p50/p99/max (ms, measured
around each `store.add` call, i.e. until the label is committed to disk), throughput, and whether
the target (p99 < 50 ms) was met. Local file only; bounded in count and time (--timeout).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _writer(path: str, writer: int, labels: int, think_s: float, ready, start, out) -> None:
    from rlhf_lab.store import PreferenceStore

    store = PreferenceStore(path)
    ready.release()
    start.wait()  # every writer starts at once: worst-case contention
    latencies = []
    pause = random.Random(writer)
    for i in range(labels):
        if think_s:  # a person reads both responses before clicking; jitter so writers drift apart
            time.sleep(pause.uniform(0.5, 1.5) * think_s)
        began = time.perf_counter()
        store.add(
            f"participant {writer} prompt {i}: write a positive review",
            [f"response a {writer}-{i}", f"response b {writer}-{i}"],
            "A" if (writer + i) % 3 else "B",
            annotator=f"participant-{writer:02d}",
        )
        latencies.append(time.perf_counter() - began)
    out.put((writer, latencies))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=30)
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause before each label (0: a tight loop, the worst case; people take seconds)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    parser.add_argument("--smoke", action="store_true", help="4 writers x 20 labels")
    args = parser.parse_args(argv)
    if args.smoke:
        args.writers, args.labels = 4, 20

    from rlhf_lab.store import PreferenceStore

    folder = Path(tempfile.mkdtemp(prefix="rlhf-lab-load-"))
    path = str(folder / "workshop.sqlite")
    PreferenceStore(path).close()  # create the schema once, before the crowd arrives
    ctx = mp.get_context("spawn")
    ready, start, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(path, w, args.labels, args.think_ms / 1000, ready, start, out))
        for w in range(args.writers)
    ]
    for p in procs:
        p.start()
    for _ in procs:  # every interpreter has imported and opened the store before the gun goes off
        ready.acquire(timeout=args.timeout)
    began = time.perf_counter()
    start.set()
    latencies: list[float] = []
    deadline = time.monotonic() + args.timeout
    for _ in procs:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        _, lat = out.get(timeout=remaining)
        latencies.extend(lat)
    wall = time.perf_counter() - began
    for p in procs:
        p.join(timeout=max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()

    store = PreferenceStore(path)
    labels = store.labels()
    keys = [(lab.annotator, lab.prompt) for lab in labels]
    expected = args.writers * args.labels
    ms = [x * 1000 for x in latencies]
    result = {
        "bench": "store_load",
        "writers": args.writers,
        "labels_per_writer": args.labels,
        "think_ms": args.think_ms,
        "labels_expected": expected,
        "labels_present": len(set(keys)),
        "duplicates": len(keys) - len(set(keys)),
        "all_present_once": len(set(keys)) == expected == len(keys),
        "latency_ms_p50": round(statistics.median(ms), 2) if ms else None,
        "latency_ms_p99": round(percentile(ms, 0.99), 2) if ms else None,
        "latency_ms_max": round(max(ms), 2) if ms else None,
        "labels_per_s": round(len(ms) / wall, 1) if wall else None,
        "wall_s": round(wall, 2),
        "target_p99_ms": 50,
    }
    result["target_met"] = bool(result["all_present_once"] and ms and result["latency_ms_p99"] < 50)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["all_present_once"] else 1)
