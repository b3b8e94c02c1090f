"""The cluster launch files parse and run the same `a3c train` entry point."""

import glob
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name):
    with open(os.path.join(ROOT, "cluster", "deploy", name)) as fh:
        return yaml.safe_load(fh)


def test_every_deploy_file_parses():
    files = glob.glob(os.path.join(ROOT, "cluster", "deploy", "*.yaml"))
    assert len(files) == 4
    for path in files:
        with open(path) as fh:
            assert isinstance(yaml.safe_load(fh), dict), path


def test_launcher_files_install_torch_first_and_start_ray():
    for name, provider in [("ray-cluster-aws.yaml", "aws"), ("ray-cluster-local.yaml", "local")]:
        cfg = load(name)
        assert cfg["provider"]["type"] == provider
        setup = cfg["setup_commands"]
        assert "torch==2.13.0" in setup[0] and "pip install" in setup[1]
        assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
        starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
        assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c), name
        assert any(dst.endswith(".ray/auth_token") for dst in cfg["file_mounts"]), name
        assert {".git", ".venv", "runs"} <= set(cfg["rsync_exclude"]), name


def test_kuberay_manifests_run_a3c_with_token_auth():
    job = load("kuberay-rayjob.yaml")
    assert job["kind"] == "RayJob" and job["spec"]["entrypoint"].startswith("a3c train ")
    cluster = load("kuberay-raycluster.yaml")
    assert cluster["kind"] == "RayCluster"
    for spec in (job["spec"]["rayClusterSpec"], cluster["spec"]):
        containers = [spec["headGroupSpec"]["template"]["spec"]["containers"][0]] + [
            g["template"]["spec"]["containers"][0] for g in spec["workerGroupSpecs"]
        ]
        for c in containers:
            assert {"name": "RAY_AUTH_MODE", "value": "token"} in c["env"]
