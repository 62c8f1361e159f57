"""What ``settle_heap`` leaves a process with, in a process of its own (it freezes the heap)."""

from __future__ import annotations

import json
import subprocess
import sys

from boost_ledger.server import GC_YOUNG_THRESHOLD

PROBE = """
import gc, json
from boost_ledger.server import settle_heap
before = gc.get_threshold()
settle_heap()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_the_heap_is_frozen_and_the_young_generation_grows_to_its_threshold() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, check=True).stdout
    seen = json.loads(out)
    assert seen["frozen"] > 1000, "what the process loaded is out of the collector's sight"
    assert seen["after"] == [GC_YOUNG_THRESHOLD, *seen["before"][1:]]
    assert seen["before"][0] < GC_YOUNG_THRESHOLD
