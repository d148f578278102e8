"""Dataset statistics on mini-MIAS and on a small manifest with ages."""

from __future__ import annotations

import json
from pathlib import Path

from hdcnn.data.adapters import load_dataset
from hdcnn.data.manifest import ImageRecord, Lesion, Manifest
from hdcnn.data.stats import (
    age_by_label_frame,
    age_histogram_frame,
    counts_by_label_frame,
    dataset_stats,
    format_stats,
    lesion_frame,
    patient_age_frame,
)
from hdcnn.terms import Label


def _record(pid: str, label: Label, age: float | None, view: str = "CC", **kw) -> ImageRecord:
    return ImageRecord(f"{pid}_{view}.png", pid, f"s{pid}", "L", view, age, "B", label, **kw)


def _aged() -> Manifest:
    return Manifest(
        [
            _record("1", Label.NORMAL, 41.0),
            _record("1", Label.NORMAL, 41.0, view="MLO"),
            _record("2", Label.MALIGNANT, 63.5, lesions=[Lesion((0, 0, 10, 20), "malignant")]),
            _record(
                "3", Label.BENIGN, 49.9, lesions=[Lesion((5, 5, 9, 7), "benign", "calcification")]
            ),
            _record("4", Label.UNKNOWN, None),
        ]
    )


def test_mias_stats(mias_root: Path) -> None:
    stats = dataset_stats(load_dataset("mias", mias_root))
    json.dumps(stats)  # JSON-ready
    assert stats["images"] == 242 and stats["patients"] == 121 and stats["studies"] == 121
    assert stats["labels"]["normal"] == 158
    assert stats["labels"]["benign"] + stats["labels"]["malignant"] == 242 - 158
    assert stats["views"] == {"MLO": 242}
    assert stats["laterality"] == {"L": 121, "R": 121}
    assert sum(stats["density"].values()) == 242 and set(stats["density"]) == {"F", "G", "D"}
    assert stats["age"] == {"available": False, "missing": 121}  # patients
    assert stats["lesions"]["by_source"] == {"circle": stats["lesions"]["total"]}
    assert sum(stats["lesions"]["by_kind"].values()) == stats["lesions"]["total"]
    assert "not available" in format_stats(stats)


def test_age_summary_histogram_and_means() -> None:
    manifest = _aged()
    stats = dataset_stats(manifest)
    json.dumps(stats)
    age = stats["age"]
    # patients, not images: patient 1's two views count once
    assert age["available"] and age["count"] == 3 and age["missing"] == 1
    assert age["min"] == 41.0 and age["max"] == 63.5 and age["median"] == 49.9
    assert age["mean_by_label"] == {"normal": 41.0, "benign": 49.9, "malignant": 63.5}
    assert age["histogram"]["normal"]["40-44"] == 1
    assert age["histogram"]["benign"]["45-49"] == 1
    assert age["histogram"]["malignant"]["60-64"] == 1
    assert set(age["histogram"]["normal"]) == {"40-44", "45-49", "50-54", "55-59", "60-64"}
    assert stats["patient_labels"] == {"normal": 1, "benign": 1, "malignant": 1, "unknown": 1}
    assert stats["views"] == {"CC": 4, "MLO": 1}
    assert stats["lesions"]["by_label_kind"] == {
        "benign": {"calcification": 1},
        "malignant": {"mass": 1},
    }
    assert stats["lesions"]["size_px"]["max"] == 20.0
    text = format_stats(stats)
    assert "images        5" in text and "mean age" in text
    # every age printed with one decimal: never "41" beside "49.9"
    assert "mean age      normal 41.0, benign 49.9, malignant 63.5" in text
    assert "3 patients with an age (1 without): mean 51.5, median 49.9" in text


def test_frames_for_the_app() -> None:
    manifest = _aged()
    hist = age_histogram_frame(manifest)
    assert list(hist.columns) == ["bin_start", "age_bin", "label", "count"]
    assert hist["count"].sum() == 3  # patients with an age
    by_label = age_by_label_frame(manifest)
    assert list(by_label["label"]) == ["normal", "benign", "malignant"]
    assert list(by_label["count"]) == [1, 1, 1]
    # a patient is counted once, under the worst label of their images, at their median age
    mixed = Manifest(
        [
            _record("7", Label.NORMAL, 50.0),
            _record("7", Label.MALIGNANT, 52.0, view="MLO"),
            _record("8", Label.BENIGN, 60.0),
        ]
    )
    ages = patient_age_frame(mixed)
    assert ages.set_index("patient_id")["label"].to_dict() == {"7": "malignant", "8": "benign"}
    assert ages.set_index("patient_id")["age"].to_dict() == {"7": 51.0, "8": 60.0}
    assert age_histogram_frame(mixed)["count"].sum() == 2
    views = counts_by_label_frame(manifest, "view")
    assert views["count"].sum() == 5
    lesions = lesion_frame(manifest)
    assert list(lesions["side"]) == [20.0, 4.0]
    empty = Manifest([_record("9", Label.NORMAL, None)])
    assert age_histogram_frame(empty).empty and age_by_label_frame(empty).empty
    assert lesion_frame(empty).empty and "size_px" not in dataset_stats(empty)["lesions"]
