"""One measurement of ``benchmark lists``, run as a script in a fresh interpreter.

    python list_probe.py LIST  ─▶ one JSON line on stdout:
      read_cpu_s         CPU time of ``data_prep.lists.read_video_list(LIST)``
      retained_mb        RSS growth of this process once the list is read (gc'd; records kept)
      peak_mb            growth of the peak RSS while reading (VmHWM)
      worker_uss_mb      private memory (USS, /proc/PID/smaps_rollup) of a forked child, as a
                         DataLoader worker is forked, after it read every record's path, label
                         and length once
      worker_start_mb    the same child's USS before touching anything
      touch_us           CPU time per record of that touching pass, in the child

It imports nothing but the standard library and ``data_prep.lists``, so the benchmark can point
``PYTHONPATH`` at another checkout (``--code``) and measure its reader, e.g. main's.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import sys
import time


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def peak_rss_mb() -> float:
    """The peak RSS of this process (VmHWM: its own, unlike ru_maxrss, which a process started
    by fork + exec inherits from its parent)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def uss_mb() -> float:
    """Private (unshared) memory of this process: Private_Clean + Private_Dirty."""
    total = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])  # kB
    return total / 1024


def touch_every_record(records, conn) -> None:
    """The worker: what a DataLoader worker reads of every record in an epoch."""
    start_uss = uss_mb()
    start = time.process_time()
    for i in range(len(records)):
        record = records[i]
        record.path, record.label, record.frame_count  # noqa: B018  (reading is the point)
    seconds = time.process_time() - start
    conn.send({"worker_start_mb": start_uss, "worker_uss_mb": uss_mb(), "touch_s": seconds})
    conn.close()


def main(path: str) -> dict:
    from data_prep.lists import read_video_list

    gc.collect()
    rss_before = rss_mb()
    peak_before = peak_rss_mb()
    start = time.process_time()
    records = read_video_list(path)
    read_s = time.process_time() - start
    peak = peak_rss_mb()
    gc.collect()
    result = {
        "rows": len(records),
        "type": type(records).__name__,
        "read_cpu_s": read_s,
        "retained_mb": rss_mb() - rss_before,
        "peak_mb": peak - peak_before,
    }
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(
        target=touch_every_record, args=(records, send)
    )
    child.start()
    worker = receive.recv()
    child.join()
    result |= {k: v for k, v in worker.items() if k != "touch_s"}
    result["touch_us"] = worker["touch_s"] / max(1, len(records)) * 1e6
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
