import os

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """One real Ray for every integration test (ray.init costs ~6-9 s here). The CLI reuses it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, include_dashboard=False, namespace="a3c-tests", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def listing(root) -> set:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}
