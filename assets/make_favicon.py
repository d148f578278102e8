"""Draws ``assets/favicon.png`` (the app's page icon, served from the project so that nothing is
fetched from the internet): ``python assets/make_favicon.py``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hdcnn.palette import LABEL_COLOURS, rgb

SIDE = 64
BACKGROUND = (31, 73, 125)


def main() -> None:
    img = np.zeros((SIDE, SIDE, 4), np.uint8)
    cv2.rectangle(img, (0, 0), (SIDE - 1, SIDE - 1), (*BACKGROUND, 255), -1)
    # a breast, chest wall on the left, with one boxed finding
    cv2.ellipse(img, (4, 32), (40, 26), 0, -90, 90, (235, 235, 235, 255), -1, cv2.LINE_AA)
    red = rgb(LABEL_COLOURS["malignant"])
    cv2.rectangle(img, (22, 20), (36, 34), (*red, 255), 3, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA))
    assert ok
    (Path(__file__).resolve().parent / "favicon.png").write_bytes(buf.tobytes())


if __name__ == "__main__":
    main()
