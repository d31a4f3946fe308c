"""Fixtures shared by the test modules."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def scratch_folders(tmp_path_factory):
    """Every test's default data, cache and runs folders are scratch ones, never the repository's data/ or runs/."""
    root = tmp_path_factory.mktemp("scratch")
    names = {"ALEXNET_NB_DATA": root / "data", "ALEXNET_NB_RUNS": root / "runs"}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: str(path) for name, path in names.items()})
    yield root
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    """A data folder of the test's own: default caches never land in the repository's data/."""
    monkeypatch.setenv("ALEXNET_NB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("ALEXNET_NB_CACHE", raising=False)
    return tmp_path / "data"
