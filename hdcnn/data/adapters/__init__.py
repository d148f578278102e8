"""Dataset adapters: build a :class:`~hdcnn.data.manifest.Manifest` from a dataset root.

Each adapter reads a dataset exactly as it is distributed (see ``docs/DATASETS_USAGE.md`` for
the expected layouts and label conventions)::

    from hdcnn.data.adapters import load_dataset
    manifest = load_dataset("mias", "../shared/data/mini-mias")
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

from hdcnn.data.manifest import Manifest
from hdcnn.errors import DatasetError

#: adapter name -> (module in this package, function name)
_ADAPTER_FUNCS: dict[str, tuple[str, str]] = {
    "mias": ("mias", "load_mias"),
    "cbis-ddsm": ("cbis_ddsm", "load_cbis_ddsm"),
    "vindr": ("vindr", "load_vindr"),
    "cmmd": ("cmmd", "load_cmmd"),
    "rsna": ("rsna", "load_rsna"),
    "inbreast": ("inbreast", "load_inbreast"),
    "folder": ("folder", "load_folder"),
    "synth": ("synth", "load_synth"),
}


def _lazy(module: str, func: str) -> Callable[[Path], Manifest]:
    def load(root: Path) -> Manifest:
        adapter = getattr(importlib.import_module(f"{__name__}.{module}"), func)
        return adapter(root)

    load.__name__ = func
    load.__doc__ = f"Load a dataset root with :func:`hdcnn.data.adapters.{module}.{func}`."
    return load


#: Every supported dataset: name -> function ``(root: Path) -> Manifest``.
ADAPTERS: dict[str, Callable[[Path], Manifest]] = {
    name: _lazy(module, func) for name, (module, func) in _ADAPTER_FUNCS.items()
}


def load_dataset(name: str, root: str | os.PathLike[str]) -> Manifest:
    """Build the manifest of the dataset ``name`` stored at ``root``.

    Args:
        name: one of :data:`ADAPTERS` (``mias``, ``cbis-ddsm``, ``vindr``, ``cmmd``, ``rsna``,
            ``inbreast``, ``folder``, ``synth``); case and ``_``/``-`` are ignored.
        root: the dataset's folder as distributed (for ``folder``: the folder or the CSV).

    Returns:
        The manifest; every record has ``dataset`` = the adapter name.

    Raises:
        DatasetError: unknown name (the message lists the valid ones), a root that does not
            exist or does not look like that dataset (the message names the missing file), or a
            malformed annotation file.
    """
    key = name.strip().lower().replace("_", "-")
    if key == "cbis" or key == "cbisddsm":
        key = "cbis-ddsm"
    if key not in ADAPTERS:
        raise DatasetError(name, f"unknown dataset; valid names: {', '.join(ADAPTERS)}")
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(str(path), f"dataset root not found (for {key})")
    manifest = ADAPTERS[key](path)
    for record in manifest:
        record.dataset = key
    return manifest


__all__ = ["ADAPTERS", "load_dataset"]
