"""The update log and `a3c replay`, without Ray: two RolloutWorkers and a ParameterServer in this process, driven
in an interleaved order as async workers push (overlapped pushes, a stale rejection, extra passes), then replayed
from the log to the same weights; a tampered log is named at the update it was changed."""

import hashlib
import os
import shutil

import pytest
import torch

from ray_a3c.actors.worker import RolloutWorker, passes
from ray_a3c.cluster.cli import main
from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.storage import checkpoint
from ray_a3c.common.wire.packet import Rejection
from ray_a3c.learner.parameter_server import ParameterServer
from ray_a3c.learner.replay import replay_run
from ray_a3c.learner.update_log import LOG_FILE, RecordKind, UpdateLog, format_record, parse_record, read_log
from tests.helpers import small_config, small_doom

# worker 1 pushes once, then worker 0 five times: worker 1's next packet is 6 versions old, over the lag of 2;
# later worker 1 is restarted (a new incarnation: fresh envs, RNG and sender)
RESTART = "restart worker 1"
SCHEDULE = [1, 0, 0, 0, 0, 0, 1] + [0, 1] * 5 + [RESTART] + [0, 1] * 5 + [1, 1, 0]
PUSHES = sum(turn != RESTART for turn in SCHEDULE)
OVERLAP = {"env.num_envs_per_worker": 2, "algo.max_policy_lag": 2, "run.update_log_digest_every": 5}
EXTRA_PASSES = {**OVERLAP, "algo.policy_epochs": 2, "algo.critic_epochs": 2, "algo.max_policy_lag": 50}


class LiveRun:
    """The workers as separate processes would run them: each keeps its own torch RNG stream."""

    def __init__(self, run_dir, overrides):
        self.cfg = small_config(**{"run.run_dir": str(run_dir), **overrides})
        log = UpdateLog.open(str(run_dir), self.cfg.run.update_log_digest_every)
        self.ps = ParameterServer(self.cfg, probe_spaces(self.cfg.env), update_log=log)
        self.workers, self.rng, self.pending = [None, None], [None, None], [None, None]
        for rank in range(2):
            self.start(rank)
        self.plan = passes(self.cfg.algo)

    def start(self, rank):
        """A worker's process starts: it seeds torch, then takes the PS's current weights."""
        if self.workers[rank] is not None:
            self.workers[rank].close()
        self.workers[rank], self.pending[rank] = RolloutWorker(self.cfg, rank), None
        self.rng[rank] = torch.get_rng_state()
        version, weights, _ = self.ps.get_weights()
        self.workers[rank].set_weights(weights, version)

    def _adopt(self, worker, result):
        if result.weights is not None:
            worker.set_weights(result.weights, result.version)

    def turn(self, rank):
        """One loop of the worker's `run`: overlapped (adopt the previous reply after computing) or, with extra
        passes, each pass pushed on the weights the previous push returned."""
        if rank == RESTART:
            return self.start(1)
        worker = self.workers[rank]
        torch.set_rng_state(self.rng[rank])
        packet = worker.compute(self.plan[0])
        if len(self.plan) == 1:
            if self.pending[rank] is not None:
                self._adopt(worker, self.pending[rank])
            self.pending[rank] = self.ps.apply_gradients(packet)
        else:
            self._adopt(worker, self.ps.apply_gradients(packet))
            for which in self.plan[1:]:
                self._adopt(worker, self.ps.apply_gradients(worker.compute(which)))
        self.rng[rank] = torch.get_rng_state()

    def finish(self):
        """As a run ends: a checkpoint, a few pushes that land after it, the log closed."""
        for rank in SCHEDULE[:-3]:
            self.turn(rank)
        ckpt_dir = os.path.join(self.cfg.run.run_dir, "checkpoints")
        checkpoint.save_versioned(self.ps.state_dict(), ckpt_dir, self.ps.version, 3)
        for rank in SCHEDULE[-3:]:
            self.turn(rank)
        self.ps.close_update_log()
        for worker in self.workers:
            worker.close()


@pytest.fixture(scope="module", params=[OVERLAP, EXTRA_PASSES], ids=["overlap", "extra-passes"])
def live_run(request, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("live") / "run"
    run_dir.mkdir()
    live = LiveRun(run_dir, request.param)
    live.finish()
    return run_dir, live


def copy_run(run_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(run_dir, target)
    return target


def test_replay_reaches_the_same_weights_bit_for_bit(live_run):
    run_dir, live = live_run
    log = read_log(os.path.join(run_dir, LOG_FILE))
    rejected = [u for u in log.updates if u.verdict == Rejection.STALE]
    assert bool(rejected) == (live.cfg.algo.policy_epochs == 1)  # the overlapped schedule has its stale packet
    assert {u.kind for u in log.updates} == {p.value for p in live.plan}
    assert len({u.sender for u in log.updates if u.rank == 1}) == 2  # the restarted worker's new incarnation
    said = []
    outcome = replay_run(str(run_dir), say=said.append)
    assert outcome.identical, outcome.message
    assert outcome.max_abs_diff == 0.0 and outcome.replayed == len(log.updates) == PUSHES * len(live.plan)
    assert outcome.message.startswith(f"replayed {len(log.updates)} updates: weights identical (max abs diff 0.0)")
    end = [r for kind, r in log.digests if kind == RecordKind.END]
    assert len(end) == 1 and end[0].version == live.ps.version  # the pushes after the checkpoint were replayed too


def test_replay_of_the_first_updates_compares_their_digests(live_run, capsys):
    run_dir, _ = live_run
    assert main(["replay", str(run_dir), "--updates", "12"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("replayed 12 updates: weights identical to the log's digests (2 digest(s) matched")


def swap_worker(log_path, index):
    """Record `index` claims to come from the other worker (its rank and current sender)."""
    with open(log_path) as fh:
        lines = fh.readlines()
    records = [parse_record(line) for line in lines]
    target = next(r for kind, r in records if kind == RecordKind.UPDATE and r.index == index)
    other = next(r for kind, r in records if kind == RecordKind.UPDATE and r.rank != target.rank)
    for n, (kind, r) in enumerate(records):
        if kind == RecordKind.UPDATE and r.index == index:
            r.rank, r.sender = other.rank, other.sender
            lines[n] = format_record(kind, r) + "\n"
    with open(log_path, "w") as fh:
        fh.writelines(lines)
    return other.rank


def test_a_swapped_worker_is_named_at_its_update(live_run, tmp_path, capsys):
    run_dir = copy_run(live_run[0], tmp_path)
    rank = swap_worker(run_dir / LOG_FILE, 9)
    assert main(["replay", str(run_dir)]) == 1
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"diverged: first digest mismatch at update 9 (worker {rank}, version "), line


def test_a_changed_weight_digest_is_named_with_the_last_match(live_run, tmp_path):
    run_dir = copy_run(live_run[0], tmp_path)
    path = run_dir / LOG_FILE
    text = path.read_text()
    line = next(x for x in text.splitlines() if x.startswith("D 10 "))
    path.write_text(text.replace(line, line[:-8] + "00000000"))
    outcome = replay_run(str(run_dir), say=lambda _: None)
    assert not outcome.identical and outcome.diverged_at == 10
    assert "differ from the log's digest line" in outcome.message and "last matched after update 5" in outcome.message


def test_replay_refuses_what_it_does_not_cover(live_run, tmp_path, capsys):
    run_dir = copy_run(live_run[0], tmp_path)
    log = run_dir / LOG_FILE
    header = log.read_text().splitlines()[0]
    log.write_text(log.read_text() + header + "\n")  # a second PS start: a resume or a recovery
    assert main(["replay", str(run_dir)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: the run's parameter server was restored")
    kind, parsed = parse_record(header)
    parsed.config_yaml = parsed.config_yaml.replace("mode: async", "mode: sync")
    parsed.config_sha256 = hashlib.sha256(parsed.config_yaml.encode()).hexdigest()
    log.write_text(format_record(kind, parsed) + "\n")
    with pytest.raises(A3CError, match="algo.mode=sync: replay covers asynchronous runs"):
        replay_run(str(run_dir))
    log.unlink()
    with pytest.raises(A3CError, match="no update log"):
        replay_run(str(run_dir))


def test_a_ps_restored_from_a_checkpoint_is_marked_and_refused(tmp_path):
    cfg = small_config(**{"run.run_dir": str(tmp_path)})
    state = ParameterServer(cfg, probe_spaces(cfg.env)).state_dict()
    ps = ParameterServer(cfg, probe_spaces(cfg.env), update_log=UpdateLog.open(str(tmp_path), 5))
    ps.load_state_dict(state)  # a resume, or a PS recovery
    ps.close_update_log()
    assert len(read_log(str(tmp_path / LOG_FILE)).restored) == 1
    with pytest.raises(A3CError, match="restored from a checkpoint"):
        replay_run(str(tmp_path))


def test_a_malformed_log_line_is_named(tmp_path):
    path = tmp_path / LOG_FILE
    path.write_text("H {}\nU 1 two\n")
    with pytest.raises(A3CError, match=f"{LOG_FILE}:1: not an update-log record"):
        read_log(str(path))


@pytest.mark.slow
def test_a_vizdoom_run_replays_too(tmp_path):
    """ViZDoom's engine is deterministic under the seed: a CNN + LSTM run on `basic` replays bit for bit."""
    pytest.importorskip("vizdoom")
    live = LiveRun(tmp_path, {**OVERLAP, **small_doom()})
    live.finish()
    outcome = replay_run(str(tmp_path), say=lambda _: None)
    assert outcome.identical and outcome.max_abs_diff == 0.0, outcome.message
