"""The `session` fixture of the Blender tests that talk to a real local backend (one per module)."""
from __future__ import annotations

import pytest

from orbitex_testing import backend_session


@pytest.fixture(scope="module")
def session(tmp_path_factory):  # type: ignore[no-untyped-def]
    """orbitex.addon.session with the add-on enabled and a local backend in a fresh data folder."""
    with backend_session(tmp_path_factory.mktemp("backend-data")) as session:
        yield session
