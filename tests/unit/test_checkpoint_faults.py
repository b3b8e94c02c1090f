"""Checkpoints that outlive bad disks and old versions, without Ray: an unreadable newest checkpoint is skipped
(resume, PS recovery, `load_policy`/`a3c evaluate` with `latest`) with one line naming it and why; none
readable is one error; failed writes keep every earlier checkpoint, warn once per errno and end the run after
run.max_checkpoint_failures in a row; schema-1 checkpoints (tests/fixtures) load, unknown versions are refused."""

import errno
import logging
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ray_a3c.cluster.cli import main
from ray_a3c.cluster.run.launch import prepare_resume
from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.inference.policy import load_policy
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import load_run_config
from ray_a3c.common.storage import checkpoint
from ray_a3c.common.storage.keys import CKPT_COUNTERS, CKPT_MODEL, CKPT_SCHEMA_VERSION
from ray_a3c.common.wire.counters import PSCounters
from ray_a3c.learner.parameter_server import ParameterServer
from tests.helpers import listing, make_run, small_config

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "schema1_cartpole")
FIXTURE_CKPT = os.path.join(FIXTURE, "checkpoints", "ckpt-3.pt")
DAMAGES = ("truncated", "empty", "wrong_schema")
REASONS = {"truncated": "unreadable or corrupt", "empty": "empty (0 bytes)", "wrong_schema": "not a ray-a3c checkpoint"}


def ckpt_path(run: str, version: int) -> str:
    return os.path.join(run, "checkpoints", f"ckpt-{version}.pt")


def add_checkpoint(run: str, version: int, shift: float = 0.0) -> dict:
    """A readable ckpt-<version>.pt: ckpt-0's state with that version and every weight moved by `shift`."""
    state = checkpoint.load(ckpt_path(run, 0))
    state[CKPT_MODEL] = {k: v + shift if v.is_floating_point() else v for k, v in state[CKPT_MODEL].items()}
    state[CKPT_COUNTERS] = {**state[CKPT_COUNTERS], "version": version}
    checkpoint.save_atomic(state, ckpt_path(run, version))
    return state


def damage(path: str, how: str) -> None:
    if how == "truncated":
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    elif how == "empty":
        open(path, "wb").close()
    else:  # a loadable file of another program's layout
        torch.save({"policy": {"w": torch.zeros(3)}}, path)


@pytest.fixture
def run(tmp_path):
    """A run dir whose newest checkpoint (ckpt-9) is to be damaged; ckpt-5 (weights moved by 0.5) is readable."""
    run = make_run(str(tmp_path), "run", **{"env.id": "CartPole-v1", "model.hidden_sizes": [8]})
    add_checkpoint(run, 5, shift=0.5)
    add_checkpoint(run, 9, shift=1.0)
    return run


def skip_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped checkpoint")]


@pytest.mark.parametrize("how", DAMAGES)
def test_resume_skips_an_unreadable_newest_checkpoint(run, how, caplog):
    damage(ckpt_path(run, 9), how)
    with caplog.at_level(logging.WARNING, logger="ray_a3c"):
        prepared = prepare_resume(run, {})
    assert prepared.resume_state[CKPT_COUNTERS]["version"] == 5
    (line,) = skip_lines(caplog)
    assert ckpt_path(run, 9) in line and REASONS[how] in line and f"using '{ckpt_path(run, 5)}'" in line


def recovering_fleet(ckpt_dir: str, monkeypatch):
    """A Fleet with stand-ins for Ray (a dead PS, a spawn that records the state): recover_ps as it runs."""
    from ray_a3c.cluster.run import fleet as fleet_module

    fleet = fleet_module.Fleet.__new__(fleet_module.Fleet)
    fleet.ckpt_dir, fleet.restarts, fleet.lost_updates, fleet.shard_counters = ckpt_dir, {"ps": 0}, 0, {}
    fleet.ps_shards, fleet.said, fleet.spawned = [object()], [], []
    fleet.say = fleet.said.append
    fleet._dead_shards = lambda: [0]
    fleet.spawn_ps = lambda state, floor: fleet.spawned.append(state)
    fleet.loops = SimpleNamespace(relaunch_all=lambda: None)
    monkeypatch.setattr(fleet_module.ray, "kill", lambda actor, no_restart: None)
    return fleet


@pytest.mark.parametrize("how", DAMAGES)
def test_a_dead_ps_is_recreated_from_the_newest_readable_checkpoint(run, how, monkeypatch, caplog):
    damage(ckpt_path(run, 9), how)
    fleet = recovering_fleet(os.path.join(run, "checkpoints"), monkeypatch)
    with caplog.at_level(logging.WARNING, logger="ray_a3c"):
        fleet.recover_ps(PSCounters(version=12))
    (state,) = fleet.spawned
    assert state[CKPT_COUNTERS]["version"] == 5
    assert fleet.lost_updates == 7 and ckpt_path(run, 5) in fleet.said[0]
    (line,) = skip_lines(caplog)
    assert ckpt_path(run, 9) in line and REASONS[how] in line


@pytest.mark.parametrize("how", DAMAGES)
def test_load_policy_latest_and_evaluate_latest_skip_it_but_a_named_bad_file_is_an_error(run, how, capsys):
    damage(ckpt_path(run, 9), how)
    policy = load_policy(run, "latest")
    expected = checkpoint.load(ckpt_path(run, 5))[CKPT_MODEL]
    for name, tensor in policy.graph.model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name])
    assert main(["evaluate", run, "--checkpoint", "latest", "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert f"skipped checkpoint '{ckpt_path(run, 9)}'" in out and f"{ckpt_path(run, 5)} (version 5" in out
    assert main(["evaluate", run, "--checkpoint", ckpt_path(run, 9)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: checkpoint '{ckpt_path(run, 9)}'") and REASONS[how] in line


def test_no_readable_checkpoint_is_one_error_line(run, monkeypatch, capsys):
    for version, how in zip((0, 5, 9), DAMAGES, strict=True):
        damage(ckpt_path(run, version), how)
    before = {p: open(os.path.join(run, p), "rb").read() for p in listing(run)}
    with pytest.raises(A3CError) as caught:
        checkpoint.load_from_run(run, checkpoint.LATEST)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("no readable checkpoint")
    assert all(ckpt_path(run, v) in message for v in (0, 5, 9))
    with pytest.raises(A3CError, match="no readable checkpoint"):
        recovering_fleet(os.path.join(run, "checkpoints"), monkeypatch).recover_ps(PSCounters(version=12))
    assert main(["train", "--resume", "--run-dir", run]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: no readable checkpoint")
    assert {p: open(os.path.join(run, p), "rb").read() for p in listing(run)} == before


def test_best_falls_back_to_the_newest_readable_checkpoint(run):
    best = os.path.join(run, "checkpoints", checkpoint.BEST_FILE)
    shutil.copyfile(ckpt_path(run, 5), best)
    assert checkpoint.load_from_run(run, checkpoint.BEST)[0] == best
    damage(best, "truncated")
    damage(ckpt_path(run, 9), "empty")
    assert checkpoint.load_from_run(run, checkpoint.BEST)[0] == ckpt_path(run, 5)


# -- failed writes ---------------------------------------------------------------------------------------------
def failing_save(code: int):
    """torch.save as on a full disk or a read-only folder: part of the file written, then OSError(code)."""

    def save(obj, path):
        with open(path, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError(code, os.strerror(code))

    return save


def trainer_on(tmp_path, **overrides):
    """A driver whose PS is in process: `_save_checkpoint` as a run calls it; each call one version on."""
    from ray_a3c.cluster.run.driver import Trainer

    cfg = small_config(**overrides)
    ps = ParameterServer(cfg, probe_spaces(cfg.env))

    def state(timeout_s):
        ps.counters.version += 1
        return ps.state_dict()

    trainer = Trainer(cfg, probe_spaces(cfg.env), str(tmp_path), quiet=True)
    trainer.fleet = SimpleNamespace(ps_state=state)
    return trainer


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_failed_write_keeps_every_checkpoint_and_warns_once_per_errno(tmp_path, monkeypatch, caplog):
    trainer = trainer_on(tmp_path, **{"run.keep_checkpoints": 2, "run.max_checkpoint_failures": 4})
    assert [os.path.basename(trainer._save_checkpoint()) for _ in range(2)] == ["ckpt-1.pt", "ckpt-2.pt"]
    ckpt_dir = str(tmp_path / "checkpoints")
    before = {name: open(os.path.join(ckpt_dir, name), "rb").read() for name in os.listdir(ckpt_dir)}
    real_save = torch.save
    with caplog.at_level(logging.WARNING, logger="ray_a3c"):
        monkeypatch.setattr(torch, "save", failing_save(errno.ENOSPC))
        assert trainer._save_checkpoint() is None and trainer._save_checkpoint() is None
        monkeypatch.setattr(torch, "save", failing_save(errno.EROFS))
        assert trainer._save_checkpoint() is None
        # nothing pruned, nothing half-written left or listed
        assert {n: open(os.path.join(ckpt_dir, n), "rb").read() for n in os.listdir(ckpt_dir)} == before
        assert checkpoint.list_checkpoints(ckpt_dir) == [os.path.join(ckpt_dir, n) for n in ("ckpt-1.pt", "ckpt-2.pt")]
        first = warnings_of(caplog)
        monkeypatch.setattr(torch, "save", real_save)
        assert os.path.basename(trainer._save_checkpoint()) == "ckpt-6.pt"
        monkeypatch.setattr(torch, "save", failing_save(errno.ENOSPC))
        assert trainer._save_checkpoint() is None
    assert len(first) == 2
    assert "No space left on device (ENOSPC)" in first[0] and "1 of at most 4" in first[0]
    assert "Read-only file system (EROFS)" in first[1] and "3 of at most 4" in first[1]
    assert all(ckpt_dir in line for line in first)
    later = warnings_of(caplog)[2:]  # a success is announced, and a new streak warns again
    assert "again after 3 failed write(s)" in later[0] and "ENOSPC" in later[1] and len(later) == 2
    assert sorted(os.listdir(ckpt_dir)) == ["ckpt-2.pt", "ckpt-6.pt"]  # the good write pruned as usual


def test_consecutive_failed_writes_end_the_run_with_one_error(tmp_path, monkeypatch):
    trainer = trainer_on(tmp_path, **{"run.max_checkpoint_failures": 2})
    monkeypatch.setattr(torch, "save", failing_save(errno.ENOSPC))
    assert trainer._save_checkpoint() is None
    with pytest.raises(A3CError) as caught:
        trainer._save_checkpoint()
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "checkpoints") in message
    assert "2 times in a row" in message and "No space left on device (ENOSPC)" in message
    assert trainer._save_checkpoint(final=True) is None  # the final one leaves the raise to train()
    assert trainer._write_failures.exhausted
    assert not os.listdir(tmp_path / "checkpoints")


def test_a_write_in_progress_is_never_listed_and_pruning_spares_newer_files(tmp_path, monkeypatch):
    ckpt_dir = str(tmp_path)
    state = {CKPT_MODEL: {"w": torch.zeros(1)}}
    for version in (1, 2, 9):
        checkpoint.save_atomic(state, os.path.join(ckpt_dir, f"ckpt-{version}.pt"))
    seen, real_save = [], torch.save

    def save_and_look(obj, path):
        real_save(obj, path)
        seen.append((sorted(os.listdir(ckpt_dir)), checkpoint.list_checkpoints(ckpt_dir)))

    monkeypatch.setattr(torch, "save", save_and_look)
    checkpoint.save_versioned(state, ckpt_dir, 3, keep=2)
    ((names, listed),) = seen
    assert any(n.startswith(".tmp-") for n in names)  # the temp file existed while it was written...
    assert [os.path.basename(p) for p in listed] == ["ckpt-1.pt", "ckpt-2.pt", "ckpt-9.pt"]  # ...and was not listed
    # keep=2 counts the files at or below the version written; ckpt-9 (a skipped one above it) stays
    assert sorted(os.listdir(ckpt_dir)) == ["ckpt-2.pt", "ckpt-3.pt", "ckpt-9.pt"]


# -- schema versions ------------------------------------------------------------------------------------------
def test_the_schema_1_fixture_loads_into_the_ps_and_load_policy(tmp_path):
    raw = torch.load(FIXTURE_CKPT, weights_only=True)
    assert CKPT_SCHEMA_VERSION not in raw  # written before versions: the fixture is what it claims
    state = checkpoint.load(FIXTURE_CKPT)
    assert checkpoint.schema_version(state, FIXTURE_CKPT) == checkpoint.LEGACY_SCHEMA_VERSION
    cfg = load_run_config(FIXTURE)
    ps = ParameterServer(cfg, probe_spaces(cfg.env))
    ps.load_state_dict(state)
    assert ps.counters.version == 3 and ps.counters.env_steps == 120
    for name, tensor in ps.model.state_dict().items():
        torch.testing.assert_close(tensor, raw[CKPT_MODEL][name])
    saved = str(tmp_path / "ckpt-3.pt")
    checkpoint.save_atomic(ps.state_dict(), saved)  # what the PS writes now is schema 2, the same entries
    assert torch.load(saved, weights_only=True)[CKPT_SCHEMA_VERSION] == checkpoint.SCHEMA_VERSION == 2
    policy = load_policy(FIXTURE, "latest")
    for name, tensor in policy.graph.model.state_dict().items():
        torch.testing.assert_close(tensor, raw[CKPT_MODEL][name])


def test_export_reads_both_schemas(tmp_path):
    new_run = make_run(str(tmp_path), "new", **{"env.id": "CartPole-v1", "model.hidden_sizes": [8]})
    obs = np.random.default_rng(0).normal(0, 0.5, (5, 4)).astype(np.float32)
    for run in (FIXTURE, new_run):
        out = str(tmp_path / f"{os.path.basename(run)}.pt2")
        assert main(["export", run, "--checkpoint", "latest", "--format", "pt2", "--out", out]) == 0
        exported = torch.export.load(out).module()(torch.as_tensor(obs)).numpy()
        np.testing.assert_array_equal(exported, load_policy(run, "latest").act(obs)[0])


def test_an_unknown_schema_version_is_refused_not_skipped(run, capsys):
    state = torch.load(ckpt_path(run, 9), weights_only=True)
    torch.save({**state, CKPT_SCHEMA_VERSION: 3}, ckpt_path(run, 9))
    with pytest.raises(A3CError) as caught:
        checkpoint.load_from_run(run, checkpoint.LATEST)  # older code must not continue (and prune) a newer run
    assert str(caught.value) == (
        f"checkpoint '{ckpt_path(run, 9)}' has schema version 3; this ray-a3c reads versions 1, 2 "
        "(a newer ray-a3c wrote it: upgrade to load it)"
    )
    assert main(["train", "--resume", "--run-dir", run]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "schema version 3" in line and "versions 1, 2" in line
