"""avssm.malloc: freed large blocks are reused instead of page-faulted in again (glibc only)."""
import json
import subprocess
import sys

import pytest

SCRIPT = """
import json, resource, sys
import numpy as np
from avssm.malloc import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(4):  # a frame's worth of large activations, written then freed, four times
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.ones(2**24, dtype=np.float32) for _ in range(3)]  # 3 x 64 MiB
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _faults(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    plain, kept = _faults("plain"), _faults("keep")
    if not kept["applied"]:
        pytest.skip("the C library is not glibc")
    # glibc's default: every round maps its blocks afresh and faults them in (in 4 KiB or, where numpy asks
    # for transparent huge pages, 2 MiB pages); kept: only the first round does.
    assert min(plain["faults"][1:]) > 100, plain
    assert kept["faults"][0] > 100 and max(kept["faults"][1:]) < min(plain["faults"][1:]) / 10, (plain, kept)
