"""Workshop load test: N writer processes label M pairs each into one preference store.

    python bench/store_load.py                      # 30 writers x 200 labels (the workshop case)
    python bench/store_load.py --writers 4 --labels 20 --smoke

`--think-ms 100` paces each writer like a (very fast) person instead of a tight loop.

    python bench/store_load.py --import-mb 100      # 10 writers keep labelling while a 100 MiB file imports
    python bench/store_load.py --import-mb 1 --smoke

With `--import-mb`, one process imports a generated JSONL file of that size (preference pairs) while
the writers label until it is done; the line adds the import's seconds, rows and peak memory (peak
RSS growth of the importing process, and its ratio to the file size; target < 2x) and the writers'
p99 latency during the import (target < 200 ms).
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
        latencies.append(_timed_label(store, writer, i))
    out.put((writer, latencies))


def _timed_label(store, writer: int, i: int) -> float:
    """One participant's label, as every writer makes it; returns its write latency in seconds."""
    began = time.perf_counter()
    store.add(
        f"participant {writer} prompt {i}: write a positive review",
        [f"response a {writer}-{i}", f"response b {writer}-{i}"],
        "A" if (writer + i) % 3 else "B",
        annotator=f"participant-{writer:02d}",
    )
    return time.perf_counter() - began


def _make_import_file(path: Path, mib: float) -> int:
    """A JSONL file of preference pairs of about `mib` MiB; returns its row count."""
    target, rows, size = int(mib * 2**20), 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            line = json.dumps(
                {
                    "prompt": f"Imported prompt {rows}: write a short review of film number {rows}.",
                    "chosen": f"A warm, funny and well acted film ({rows}); I would watch it again.",
                    "rejected": f"A dull film ({rows}); the plot goes nowhere and the jokes fall flat.",
                }
            )
            f.write(line + "\n")
            size += len(line) + 1
            rows += 1
    return rows


def _importer(path: str, file: str, ready, start, out) -> None:
    import resource

    from rlhf_lab.store import PreferenceStore

    store = PreferenceStore(path)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    ready.release()
    start.wait()
    began = time.perf_counter()
    ids = store.import_file(file, max_bytes=2**40, annotator="importer")
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put(("import", {"rows": len(ids), "seconds": seconds, "peak_rss_mb": peak, "baseline_mb": baseline}))


def _writer_until(path: str, writer: int, think_s: float, ready, start, stop, out) -> None:
    from rlhf_lab.store import PreferenceStore

    store = PreferenceStore(path)
    ready.release()
    start.wait()
    latencies, i, pause = [], 0, random.Random(writer)
    while not stop.is_set():
        time.sleep(pause.uniform(0.5, 1.5) * think_s)
        latencies.append(_timed_label(store, writer, i))
        i += 1
    out.put((writer, latencies))


def import_under_load(args: argparse.Namespace) -> dict:
    """10 (--writers) writers label while one process imports a file of --import-mb MiB."""
    from rlhf_lab.store import PreferenceStore

    folder = Path(tempfile.mkdtemp(prefix="rlhf-lab-import-load-"))
    path, file = str(folder / "workshop.sqlite"), folder / "big.jsonl"
    rows = _make_import_file(file, args.import_mb)
    PreferenceStore(path).close()
    ctx = mp.get_context("spawn")
    ready, start, stop, out = ctx.Semaphore(0), ctx.Event(), ctx.Event(), ctx.Queue()
    think = (args.think_ms or 20.0) / 1000
    procs = [
        ctx.Process(target=_writer_until, args=(path, w, think, ready, start, stop, out))
        for w in range(args.writers)
    ]
    procs.append(ctx.Process(target=_importer, args=(path, str(file), ready, start, out)))
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire(timeout=args.timeout)
    began = time.perf_counter()
    start.set()
    results: dict = {}
    deadline = time.monotonic() + args.timeout
    while len(results) < len(procs) and time.monotonic() < deadline:
        key, value = out.get(timeout=max(0.1, deadline - time.monotonic()))
        results[key] = value
        if key == "import":
            stop.set()  # the writers finish their current label and report
    stop.set()
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
    report = results.get("import", {})
    written = {w: len(results.get(w, [])) for w in range(args.writers)}
    ms = [x * 1000 for w in range(args.writers) for x in results.get(w, [])]
    store = PreferenceStore(path)
    humans = [(lab.annotator, lab.prompt) for lab in store.labels() if lab.annotator != "importer"]
    imported = store.count() - len(humans)
    file_mb = file.stat().st_size / 2**20
    growth = report.get("peak_rss_mb", 0) - report.get("baseline_mb", 0)
    result = {
        "bench": "store_load_import",
        "import_mb": round(file_mb, 1),
        "import_rows": rows,
        "imported_rows": imported,
        "import_s": round(report.get("seconds", float("nan")), 1),
        "import_peak_rss_mb": round(report.get("peak_rss_mb", float("nan")), 1),
        "import_rss_growth_mb": round(growth, 1),
        "import_memory_x_file": round(growth / file_mb, 2) if file_mb else None,
        "writers": args.writers,
        "think_ms": think * 1000,
        "labels_expected": sum(written.values()),
        "labels_present": len(set(humans)),
        "duplicates": len(humans) - len(set(humans)),
        "latency_ms_p50": round(statistics.median(ms), 2) if ms else None,
        "latency_ms_p99": round(percentile(ms, 0.99), 2) if ms else None,
        "latency_ms_max": round(max(ms), 2) if ms else None,
        "wall_s": round(time.perf_counter() - began, 1),
        "target_p99_ms": 200,
        "target_memory_x_file": 2,
    }
    result["all_present_once"] = (
        result["labels_present"] == result["labels_expected"] == len(humans) and imported == rows
    )
    result["target_met"] = bool(
        result["all_present_once"] and ms and result["latency_ms_p99"] < 200 and growth < 2 * file_mb
    )
    print(json.dumps(result))
    return result


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
    parser.add_argument(
        "--smoke", action="store_true", help="4 writers x 20 labels (with --import-mb: 4 writers)"
    )
    parser.add_argument(
        "--import-mb", type=float, default=None, help="import a generated file of this many MiB under load"
    )
    args = parser.parse_args(argv)
    if args.import_mb is not None:
        args.writers = 4 if args.smoke else (args.writers if args.writers != 30 else 10)
        return import_under_load(args)
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
