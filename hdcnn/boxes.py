"""Box geometry shared by the evaluation and the display: the one IoU.

Boxes are ``[x1, y1, x2, y2]`` float pixels of the image they belong to. This module depends on
nothing of the package, so both :mod:`hdcnn.findings` (the merge rule) and
:mod:`hdcnn.evaluation` (the FROC) use it without importing each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def box_iou(a: Any, b: Any) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` ``[x1, y1, x2, y2]`` boxes -> float64 ``(N, M)``.

    ``torchvision.ops.box_iou`` on NumPy input (the library's one IoU); pairs whose union is
    empty (degenerate boxes) get 0 instead of NaN.
    """
    import torch
    from torchvision.ops import box_iou as tv_box_iou

    ta = torch.from_numpy(np.array(a, dtype=np.float64).reshape(-1, 4))
    tb = torch.from_numpy(np.array(b, dtype=np.float64).reshape(-1, 4))
    return np.nan_to_num(tv_box_iou(ta, tb).numpy(), nan=0.0)
