import pytest


@pytest.fixture(scope="session")
def ray_session():
    """One real Ray for every integration test (ray.init costs ~6-9 s here). The CLI reuses it."""
    ray = pytest.importorskip("ray")
    from ray_a3c.cluster.runtime import local_init_options
    from ray_a3c.common.config import Config, from_flat

    config = from_flat(
        {"cluster.num_cpus": 4, "cluster.include_dashboard": False, "cluster.namespace": "a3c-tests"}, Config()
    )
    ray.init(**local_init_options(config), log_to_driver=False)  # the options `a3c train` starts Ray with
    yield ray
    ray.shutdown()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path
