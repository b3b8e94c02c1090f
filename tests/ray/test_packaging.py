"""The installed package as a user gets it: a wheel in a fresh venv, one `ray_a3c` namespace, the user's own
`common/` package and env module next to it, no PYTHONPATH."""

import glob
import json
import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CORRIDOR = textwrap.dedent('''
    import os
    import gymnasium as gym
    import numpy as np


    class Corridor(gym.Env):
        """Walk right to the end of a corridor; each construction leaves a marker naming its process."""

        def __init__(self, length: int = 4):
            open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "built", str(os.getpid())), "w").close()
            self.length, self.pos = length, 0
            self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
            self.action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.pos = 0
            return np.array([0.0], np.float32), {}

        def step(self, action):
            self.pos = max(0, self.pos + (1 if action == 1 else -1))
            done = self.pos >= self.length
            return np.array([self.pos / self.length], np.float32), float(done), done, False, {}
''')


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """A new venv holding only our wheel; the heavy dependencies come from the test venv's site-packages
    through a .pth line (its .pth files, our editable install's among them, are not processed that way)."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(root / "dist"),
            ROOT,
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = glob.glob(str(root / "dist" / "ray_a3c-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(os.path.join(site, "deps.pth"), "w") as fh:
        fh.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return venv


def clean_env(venv) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = str(venv / "bin") + os.pathsep + env["PATH"]
    return env


def test_wheel_installs_one_namespace(fresh_venv, tmp_path):
    env = clean_env(fresh_venv)
    python = str(fresh_venv / "bin" / "python")
    assert (
        subprocess.run(
            [str(fresh_venv / "bin" / "a3c"), "--help"], env=env, cwd=tmp_path, capture_output=True, timeout=60
        ).returncode
        == 0
    )
    probe = (
        "import importlib.util, json, ray_a3c; print(json.dumps({'api': [ray_a3c.train.__name__, "
        "ray_a3c.load_policy.__name__, ray_a3c.Config.__name__], 'file': ray_a3c.__file__, "
        "'generic': [m for m in ('common', 'actors', 'learner', 'cluster') if importlib.util.find_spec(m)]}))"
    )
    proc = subprocess.run([python, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["api"] == ["train", "load_policy", "Config"]
    assert str(fresh_venv) in result["file"]  # the wheel's copy, not the source tree
    assert result["generic"] == []
    proc = subprocess.run([python, "-c", "import common"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and "No module named 'common'" in proc.stderr


def test_train_a_users_env_beside_their_own_common_package(fresh_venv, tmp_path):
    project = tmp_path / "project"
    (project / "common").mkdir(parents=True)
    (project / "built").mkdir()
    (project / "common" / "__init__.py").write_text("")
    (project / "common" / "config.py").write_text("Config = 'the user one'\n")
    (project / "myenvs.py").write_text(CORRIDOR)
    cmd = [
        str(fresh_venv / "bin" / "a3c"),
        "train",
        "--env",
        "myenvs:Corridor",
        "--total-env-steps",
        "2000",
        "--num-workers",
        "2",
        "--run-dir",
        "run",
        "--set",
        "cluster.include_dashboard=false",
        "env.num_envs_per_worker=2",
    ]
    proc = subprocess.run(cmd, cwd=project, env=clean_env(fresh_venv), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["env_steps"] >= 2000 and summary["first_gradient_s"] > 0
    # Envs were built in the driver (the probe) and in at least two other processes: the Ray workers.
    assert len(os.listdir(project / "built")) >= 3


def test_a_users_env_module_is_shipped_to_cluster_nodes(tmp_path, monkeypatch):
    """Joining a cluster (--address), the user's own env module travels in the job's runtime env; installed
    modules and gymnasium ids do not."""
    from ray_a3c.cluster.run.runtime import user_module_runtime_env

    (tmp_path / "mysim.py").write_text("import gymnasium\n")
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "envs.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with user_module_runtime_env("mysim:Sim") as runtime_env:
        (staged,) = runtime_env["py_modules"]
        assert os.path.basename(staged) == "mysim"
        with open(os.path.join(staged, "__init__.py")) as fh:
            assert fh.read() == "import gymnasium\n"
    assert not os.path.exists(os.path.dirname(staged))  # ray.init has uploaded it: no temp dir left per run
    with user_module_runtime_env("mypkg.envs:Env") as runtime_env:
        assert runtime_env == {"py_modules": [str(tmp_path / "mypkg")]}
    assert (tmp_path / "mypkg" / "envs.py").exists()  # a package ships from where it is, untouched
    for env_id in ("CartPole-v1", "gymnasium.envs.classic_control:CartPoleEnv", "vizdoom:basic"):
        with user_module_runtime_env(env_id) as runtime_env:
            assert runtime_env is None


def test_every_not_installed_error_names_an_extra_that_exists():
    """Each `pip install 'ray-a3c[X]'` the code or the documents tell a user names an extra of setup.cfg."""
    import configparser
    import re

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser = configparser.ConfigParser()
    parser.read(os.path.join(root, "setup.cfg"))
    extras = set(parser["options.extras_require"])
    files = [
        p
        for pattern in ("common/**/*.py", "actors/**/*.py", "learner/**/*.py", "cluster/**/*.py", "*.md", "docs/*.md")
        for p in glob.glob(os.path.join(root, pattern), recursive=True)
    ]
    named = {extra for path in files for extra in re.findall(r"ray-a3c\[(\w+)\]", open(path).read())}
    from ray_a3c.common.env.env_ids import EXTRA_HINTS

    named |= set(EXTRA_HINTS.values())
    assert {"doom", "atari", "export", "minari", "mujoco", "plot"} <= named
    assert named <= extras, named - extras
