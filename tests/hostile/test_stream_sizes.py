"""Issue 21: compressed DICOM whose stream states another size than the header, read in a
child process under a tight address-space cap (base + 1 GiB): each must be refused, naming the
file and the lie, before any decoder reserves memory. Before the fix the first of them grew
the process to 16 GB.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.hostile.hostile_corpus import liar_cases

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[1])
import numpy, pydicom, pydicom.pixels, cv2  # mapped before the cap is measured
from hdcnn.errors import HDCNNError
from hdcnn.reader import read_mammogram
from tests.hostile.hostile_corpus import liar_cases
from tests.hostile.memory_cap import address_space_cap

cases = liar_cases()
results = {}
with address_space_cap(1 << 30):
    for case in cases:
        try:
            read_mammogram(case.data, name=case.name)
            results[case.name] = "read"
        except HDCNNError as exc:
            results[case.name] = str(exc)
        except BaseException as exc:
            results[case.name] = "RAW " + type(exc).__name__
print(json.dumps(results))
"""


def test_lying_streams_are_refused_within_one_gib() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for case in liar_cases():
        message = results[case.name]
        assert message.startswith(f"{case.name}: "), message
        assert re.search(case.expect, message), message
        assert "not enough memory" not in message
