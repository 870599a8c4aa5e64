"""settle_heap: start-up objects frozen out of the collector's scans."""

from __future__ import annotations

import json
import subprocess
import sys

_SCRIPT = """
import gc, json
from pipeline.scorer.warm import settle_heap
kept = [[i] for i in range(10_000)]  # long-lived, GC-tracked
before = gc.get_freeze_count()
settle_heap()
print(json.dumps({
    "before": before,
    "after": gc.get_freeze_count(),
    "young_left": gc.get_count()[0],
    "threshold": gc.get_threshold(),
}))
"""


def test_settle_heap_freezes_what_is_loaded_and_spaces_young_collections() -> None:
    # Process-wide collector state: measured in a process of its own.
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    figures = json.loads(out)
    assert figures["before"] == 0
    assert figures["after"] >= 10_000  # the start-up objects, the list above among them
    assert figures["young_left"] < 100
    assert figures["threshold"] == [100_000, 50, 100]
