"""Fixtures shared by the test modules."""

import pytest


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    """A data folder of the test's own: default caches never land in the repository's data/."""
    monkeypatch.setenv("ALEXNET_NB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("ALEXNET_NB_CACHE", raising=False)
    return tmp_path / "data"
