"""The cluster launch files parse and run the same `a3c train` entry point; the KubeRay manifests name the image
the Dockerfile builds with `make image`, on the Ray, torch and extras setup.cfg and the Makefile pin."""

import configparser
import glob
import importlib.metadata
import os
import re

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def setup_cfg():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    return parser


def requirement(name: str) -> Requirement:
    """setup.cfg's install requirement for the distribution `name`."""
    lines = setup_cfg()["options"]["install_requires"].strip().split("\n")
    return next(Requirement(line) for line in lines if Requirement(line).name == name)


def images(node) -> list[str]:
    """Every container image a manifest names, at any depth."""
    if isinstance(node, dict):
        own = [node["image"]] if "image" in node else []
        return own + [image for value in node.values() for image in images(value)]
    if isinstance(node, list):
        return [image for value in node for image in images(value)]
    return []


def test_manifests_name_the_image_make_image_builds():
    with open(os.path.join(ROOT, "Makefile")) as fh:
        makefile = fh.read()
    default = re.search(r"^IMAGE \?= (\S+)$", makefile, re.M)[1]
    assert re.search(r"^image:\n(\t.*\n)*\tdocker build -t \$\(IMAGE\) \.$", makefile, re.M)
    for name in ("kuberay-raycluster.yaml", "kuberay-rayjob.yaml"):
        named = images(load(name))
        assert len(named) == 2 and set(named) == {default}, (name, named)
    assert default.rsplit(":", 1)[1] == setup_cfg()["metadata"]["version"]


def test_dockerfile_builds_on_the_ray_and_torch_this_project_runs():
    with open(os.path.join(ROOT, "Dockerfile")) as fh:
        dockerfile = fh.read()
    ray, major, minor = re.search(r"^FROM rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-cpu$", dockerfile, re.M).groups()
    assert ray in requirement("ray").specifier and ray == importlib.metadata.version("ray")
    assert f"{major}.{minor}" in SpecifierSet(setup_cfg()["options"]["python_requires"])
    assert load("kuberay-raycluster.yaml")["spec"]["rayVersion"] == ray
    assert load("kuberay-rayjob.yaml")["spec"]["rayClusterSpec"]["rayVersion"] == ray
    torch = re.search(r"--index-url https://download\.pytorch\.org/whl/cpu torch==(\S+)$", dockerfile, re.M)[1]
    with open(os.path.join(ROOT, "Makefile")) as fh:
        assert f"$(BIN)/pip install --quiet torch=={torch}\n" in fh.read(), "the Dockerfile's torch is the Makefile's"
    assert torch in requirement("torch").specifier


def test_dockerfile_installs_extras_that_exist():
    with open(os.path.join(ROOT, "Dockerfile")) as fh:
        extras = re.search(r"pip install --no-cache-dir '\.\[([\w,]+)\]'", fh.read())[1].split(",")
    assert {"doom", "atari"} <= set(extras) <= set(setup_cfg()["options.extras_require"])
    with open(os.path.join(ROOT, ".dockerignore")) as fh:
        ignored = set(fh.read().split("\n"))
    assert {".git", ".venv", "runs", "**/__pycache__"} <= ignored
