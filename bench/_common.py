"""What the benchmarks share: how busy the machine is, and how results files are kept."""

from __future__ import annotations

import os
from pathlib import Path


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (Linux), else 0."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def write_results(path: Path, heading: str, section: str) -> None:
    """Add ``section`` (Markdown starting with a ``## `` title) to the results file at ``path``, replacing an
    earlier section with the same title; a new file starts with ``heading``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else f"{heading}\n"
    title = section.splitlines()[0]
    parts = text.split("\n## ")
    kept = [parts[0].rstrip("\n")] + ["## " + p.rstrip("\n") for p in parts[1:] if not ("## " + p).startswith(title)]
    path.write_text("\n\n".join([*kept, section.rstrip("\n")]) + "\n")


def process_group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of process group ``pgid`` (Linux), else 0."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
