import pytest

from tests.cluster_client import start_cluster


@pytest.fixture(scope="module")
def cluster():
    """A two-node Ray cluster of the test module's own (tests/cluster_helper.py): the cluster test files change
    its nodes, so no two files share one."""
    yield from start_cluster()
