import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings

# The fuzz suite (tests/unit/test_fuzz_inputs.py) is reproducible: the same cases on every run and machine for the same
# test selection (hypothesis also draws constants from the project's modules already imported), no
# example database written, no deadline (a case that builds an env may take a fraction of a second on a busy
# CI core). Each test names its own max_examples.
settings.register_profile(
    "ci",
    database=None,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.register_profile("explore", parent=settings.get_profile("ci"), derandomize=False)  # new cases each run
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def ray_session():
    """One real Ray for every integration test (ray.init costs ~6-9 s here). The CLI reuses it."""
    ray = pytest.importorskip("ray")
    from ray_a3c.cluster.run.runtime import local_init_options
    from ray_a3c.common.settings.config import Config, from_flat

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


FUZZ_CASES = pytest.StashKey[Counter]()


@pytest.fixture(scope="session")
def fuzz_cases(request) -> Counter:
    """(kind, outcome) -> generated inputs the fuzz suite tried; reported at the end of the session."""
    return request.config.stash.setdefault(FUZZ_CASES, Counter())


def pytest_terminal_summary(terminalreporter):
    """How many generated inputs of each kind the fuzz suite tried, when it ran (issue 43 asks for the count)."""
    cases = terminalreporter.config.stash.get(FUZZ_CASES, Counter())
    for kind in sorted({kind for kind, _ in cases}):
        outcomes = {o: n for (k, o), n in sorted(cases.items()) if k == kind}
        detail = ", ".join(f"{n} {o}" for o, n in outcomes.items())
        terminalreporter.write_line(f"fuzz cases tried: {kind}: {sum(outcomes.values())} ({detail})")
    if cases:
        terminalreporter.write_line(f"fuzz cases tried: all kinds: {sum(cases.values())}")
