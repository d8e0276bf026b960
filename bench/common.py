"""Shared benchmark plumbing: timing with warm-up, a plain-text table, and `--json` (one JSON object on
the last line of stdout, for scripts that collect results)."""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from typing import Callable


def time_ms(fn: Callable[[], object], repeats: int = 7, warmup: int = 2) -> tuple[float, float, float]:
    """(median wall, best wall, median CPU) time of fn() in milliseconds, after `warmup` untimed calls.

    CPU time is summed over this process's threads; on a machine shared with other busy processes it
    says what the work costs when wall time is inflated by waiting for a core."""
    for _ in range(warmup):
        fn()
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        times.append(1000.0 * (time.perf_counter() - start))
        cpu_times.append(1000.0 * (time.process_time() - cpu_start))
    return statistics.median(times), min(times), statistics.median(cpu_times)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def format_table(rows: list[dict], columns: list[str]) -> str:
    """Left-aligned text table of `columns` from `rows` (floats to at most 4 decimals, trailing zeros dropped:
    one decimal printed an SSIM of 0.8826 as 0.9, the target it missed)."""
    cells = [[_number(row[c]) if isinstance(row[c], float) else str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _number(value: float) -> str:
    text = f"{value:.4f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def json_flag_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the common `--json` flag."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    return parser


def emit(result: dict, table: str, as_json: bool) -> None:
    """Print the table, then (with --json) the result as one JSON line, last."""
    print(table, flush=True)
    if as_json:
        print(json.dumps(result), flush=True)
