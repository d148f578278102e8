"""The library's exception types.

Every error that a user can cause (a bad file, a dataset folder that is not what its adapter
expects, a checkpoint that does not fit) is raised as a subclass of :class:`HDCNNError` whose
message names the input and the problem, e.g. ``"scan.dcm: DICOM file has no pixel data"``.
"""

from __future__ import annotations


class HDCNNError(Exception):
    """Base class of all errors raised on purpose by :mod:`hdcnn`."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class MammogramError(HDCNNError, ValueError):
    """An image that cannot be read or used as a mammogram."""


class DatasetError(HDCNNError, ValueError):
    """A dataset root, manifest or annotation file that does not match its expected format."""


class CheckpointError(HDCNNError, ValueError):
    """A weights file or directory that cannot be loaded."""


class PacsError(HDCNNError):
    """A DICOM server that cannot be reached, or a study it does not hold or cannot take."""
