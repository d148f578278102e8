"""Every hostile-input test runs under an address-space cap (:mod:`tests.hostile.memory_cap`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.memory_cap import address_space_cap


@pytest.fixture(autouse=True)
def _address_space_cap() -> Iterator[None]:
    with address_space_cap():
        yield
