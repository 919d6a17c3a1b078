r"""Peak resident memory of this process, for benchmarks that run each measurement in a child process."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path


def run_child(script: str, *args: str) -> dict:
    r"""Runs ``script --child *args`` in a fresh interpreter (so that its peak memory is its own) and
    returns the JSON object it prints last."""
    out = subprocess.run([sys.executable, script, "--child", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    r"""The high-water mark of this process's resident memory, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
