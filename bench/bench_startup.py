"""Start-up time of the `promptline` command (target: `promptline --help` under 300 ms)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 15
TARGET_MS = 300.0
SCRIPT = Path(sys.executable).parent / "promptline"


def measure(args: list[str]) -> list[float]:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([str(SCRIPT), *args], check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    baseline = measure_python()
    print(f"{'command':<28}{'median ms':>10}{'p90 ms':>9}{'target':>9}  met")
    print(
        f"{'python -c pass (floor)':<28}{statistics.median(baseline):>10.1f}"
        f"{sorted(baseline)[int(RUNS * 0.9)]:>9.1f}{'':>9}"
    )
    for args in (["--help"], ["--version"], ["events", "--help"]):
        t = measure(args)
        med = statistics.median(t)
        print(
            f"{'promptline ' + ' '.join(args):<28}{med:>10.1f}{sorted(t)[int(RUNS * 0.9)]:>9.1f}"
            f"{TARGET_MS:>9.0f}  {'yes' if med < TARGET_MS else 'NO'}"
        )


def measure_python() -> list[float]:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


if __name__ == "__main__":
    main()
