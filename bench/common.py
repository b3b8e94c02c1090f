"""Helpers shared by the benchmark scripts: machine description and BENCHMARKS.md section updates."""
from __future__ import annotations

import os
import platform
import re
import statistics
import time

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BENCHMARKS.md")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, no GPU, Python {platform.python_version()}"


def today() -> str:
    return time.strftime("%Y-%m-%d")


def median(values: list) -> float:
    finite = [v for v in values if v is not None]
    return statistics.median(finite) if finite else float("nan")


def update_section(name: str, body: str) -> None:
    """Replace the text between <!-- name:begin --> and <!-- name:end --> in BENCHMARKS.md (append if absent)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = open(BENCHMARKS).read() if os.path.exists(BENCHMARKS) else "# Benchmarks\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(BENCHMARKS, "w") as fh:
        fh.write(text)
