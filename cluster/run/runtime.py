"""Starting or joining Ray, and the resource options of each actor role."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator

import ray

from ray_a3c.common.env.env_ids import user_module_names
from ray_a3c.common.env.wrappers import parse_wrappers
from ray_a3c.common.settings.config import Config

ACTOR_MODULES = "ray_a3c.cluster.comms.remote"  # the module that defines every actor class (imports torch)


def required_cpus(config: Config) -> float:
    c = config.cluster
    ps_cpus = c.ps_num_cpus * config.learner.num_shards
    return config.run.num_workers * c.worker_num_cpus + ps_cpus + c.eval_num_cpus


def start_ray(config: Config) -> tuple[bool, float, str]:
    """Join `cluster.address`, or start a local Ray sized for the run.

    Returns (we_started_it, seconds, dashboard_url).

    An already-initialised Ray (a test session, a notebook) is reused and left running.
    """
    if ray.is_initialized():
        return False, 0.0, "(Ray was already running)"
    t0 = time.perf_counter()
    c = config.cluster
    # Silence Ray's per-task log forwarding chatter in the progress output; errors still surface.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    address = c.join_address()
    if address:
        with user_module_runtime_env(config.env.id, config.env.wrappers) as runtime_env:
            ctx = ray.init(
                address=address,
                namespace=c.namespace,
                log_to_driver=True,
                logging_level=logging.WARNING,
                runtime_env=runtime_env,
            )
    else:
        ctx = ray.init(**local_init_options(config), log_to_driver=True)
    url = getattr(ctx, "dashboard_url", None)
    return True, time.perf_counter() - t0, f"http://{url}" if url else "(no dashboard)"


def session_dir() -> str | None:
    """The directory of the Ray session this process is connected to (where Ray writes its Grafana and
    Prometheus files), or None when Ray does not say."""
    try:
        return ray._private.worker._global_node.get_session_dir_path()  # no public API gives it in 2.60
    except AttributeError:
        return None


def local_init_options(config: Config) -> dict:
    """`ray.init` options of a local Ray sized for the run."""
    c = config.cluster
    auto = config.run.num_workers == 0
    num_cpus = c.num_cpus or (os.cpu_count() if auto else max(int(math.ceil(required_cpus(config))), 1))
    extra = {"_metrics_export_port": c.metrics_export_port} if c.metrics_export_port else {}
    # Ray prestarts Python workers while it starts; importing our actors' modules there (torch: ~2 s of CPU
    # each) overlaps Ray's own start-up instead of following it
    # address "local": always a Ray of our own, even where `ray start` left a cluster running on this machine
    # (ray.init would join that one, and refuse num_cpus there)
    return dict(
        address="local",
        num_cpus=num_cpus,
        namespace=c.namespace,
        include_dashboard=c.include_dashboard,
        dashboard_host=c.dashboard_host,
        logging_level=logging.WARNING,
        _system_config={"preload_python_modules": [ACTOR_MODULES]},
        **extra,
    )


def user_module_path(module_name: str) -> str | None:
    """The file or package directory of a module's top-level package when it is the user's own (not
    installed in site-packages): the nodes of a cluster do not have it."""
    top = module_name.split(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return None
    path = os.path.dirname(spec.origin) if spec.submodule_search_locations else spec.origin
    installed = {
        os.path.realpath(p)
        for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], sys.base_prefix)
    }
    if any(os.path.realpath(path).startswith(root + os.sep) for root in installed):
        return None
    return path


@contextlib.contextmanager
def user_module_runtime_env(env_id: str, wrappers: list = ()) -> Iterator[dict | None]:
    """A runtime env that ships the user's modules, env.id's and env.wrappers' (`module:Class`), to every node
    (Ray's py_modules takes directories: a single-file module is staged as `<name>/` holding it as
    `__init__.py`). `ray.init` uploads them, so the staging directory is removed on leaving the block."""
    names = user_module_names(env_id, [spec.name for spec in parse_wrappers(list(wrappers))])
    paths = list(dict.fromkeys(p for p in map(user_module_path, names) if p is not None))
    if not paths:
        yield None
        return
    staging = tempfile.mkdtemp(prefix="a3c-modules-")
    try:
        shipped = []
        for path in paths:
            if os.path.isfile(path):
                staged = os.path.join(staging, os.path.splitext(os.path.basename(path))[0])
                os.makedirs(staged)
                shutil.copyfile(path, os.path.join(staged, "__init__.py"))
                path = staged
            shipped.append(path)
        yield {"py_modules": shipped}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_num_workers(config: Config) -> int:
    """`run.num_workers` 0 = auto: the cluster's free CPUs less the PS's (every shard's) and the evaluator's."""
    if config.run.num_workers:
        return config.run.num_workers
    c = config.cluster
    eval_cpus = c.eval_num_cpus if config.run.evaluate else 0.0
    free = ray.available_resources().get("CPU", 0.0) - c.ps_num_cpus * config.learner.num_shards - eval_cpus
    return max(1, int(free // max(c.worker_num_cpus, 1e-9)))
