from __future__ import annotations

import pytest

from ferdata.workspace import Workspace


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace.resolve(tmp_path / "ws")
