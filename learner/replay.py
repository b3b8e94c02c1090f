"""`a3c replay RUN`: recompute an asynchronous run in one process, packet by packet in the order its parameter
server judged them (RUN_DIR/updates.log, learner/update_log.py), and check that it ends at the same weights bit
for bit, or name the first update where it departs.

Each packet is recomputed by its own worker (a RolloutWorker per sender, seeded as the live one was: a
restarted worker is a fresh one) on the weights of the version the log names, then judged by a fresh
ParameterServer. The workers share this process's torch and numpy RNGs, so each worker's RNG state is put back
whenever it takes its turn: its draws follow one another exactly as in its own process."""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import yaml

from ray_a3c.actors.worker import Pass, RolloutWorker
from ray_a3c.common.env.envs import probe_spaces
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.settings.config import Config, from_saved
from ray_a3c.common.settings.validation import validate
from ray_a3c.common.storage import checkpoint
from ray_a3c.common.storage.keys import CKPT_COUNTERS, CKPT_MODEL
from ray_a3c.common.wire.counters import PSCounters
from ray_a3c.learner.parameter_server import ParameterServer
from ray_a3c.learner.update_log import (
    LOG_FILE,
    LOG_FORMAT,
    DigestRecord,
    LineBuffer,
    LogContents,
    RecordKind,
    UpdateLog,
    UpdateRecord,
    read_log,
    weights_digest,
)

PROGRESS_EVERY_S = 5.0
COMPARED_FIELDS = ("rank", "seq", "version", "kind", "env_steps", "episodes", "verdict", "grad_norm")


@dataclass
class ReplayOutcome:
    replayed: int  # update records recomputed
    identical: bool
    message: str  # the one line `a3c replay` ends with
    diverged_at: int | None = None  # the first update whose recomputation departs from the log
    max_abs_diff: float | None = None  # against the checkpoint compared, if one was


def replayable_config(contents: LogContents, path: str) -> Config:
    """The config the run's PS and workers were given; an A3CError names what replay does not cover."""
    header = contents.headers[0]
    if header.format != LOG_FORMAT:
        raise A3CError(f"{path} is in update-log format {header.format}; this version reads format {LOG_FORMAT}")
    if len(contents.headers) > 1 or contents.restored:
        raise A3CError(
            f"the run's parameter server was restored from a checkpoint (a resume or a PS recovery; "
            f"{len(contents.headers)} PS start(s) in the log): replay covers one PS's life, from its first update"
        )
    if hashlib.sha256(header.config_yaml.encode()).hexdigest() != header.config_sha256:
        raise A3CError(f"{path}: the header's config does not match its sha256: the log was edited")
    config = validate(from_saved(yaml.safe_load(header.config_yaml), source=path))
    a, learner = config.algo, config.learner
    refused = [
        (a.mode != "async", f"algo.mode={a.mode}: replay covers asynchronous runs"),
        (learner.num_shards != 1, f"learner.num_shards={learner.num_shards}: replay covers one PS shard"),
        (learner.max_batch_packets != 1, f"learner.max_batch_packets={learner.max_batch_packets}: replay needs 1"),
        (config.cluster.aggregate != "none", f"cluster.aggregate={config.cluster.aggregate}: replay needs none"),
        (header.device != "cpu", f"the PS stepped on {header.device}: replay recomputes on the CPU"),
        (
            a.lr_schedule == "linear" and config.run.time_limit_s is not None,
            "algo.lr_schedule=linear with run.time_limit_s: the learning rate followed the wall clock",
        ),
    ]
    for bad, why in refused:
        if bad:
            raise A3CError(f"cannot replay this run: {why}")
    return config


class _Slot:
    """One worker incarnation and its RNG state while another worker has the process's RNGs."""

    def __init__(self, worker: RolloutWorker):
        self.worker = worker
        self.rng: tuple | None = None  # (torch, numpy) states; None while this worker holds the RNGs


class Replayer:
    def __init__(self, config: Config, contents: LogContents, say: Callable[[str], None]):
        torch.set_num_threads(1)  # as every actor of the run
        self.config, self.contents, self.say = config, contents, say
        self._sink = LineBuffer()
        self.ps = ParameterServer(config, probe_spaces(config.env), update_log=UpdateLog(self._sink, None))
        self.init_digest = self._sink.take()[0][1].init_digest
        self._slots: dict[str, _Slot] = {}  # sender -> its worker
        self._retired: set[str] = set()  # senders whose rank has a newer incarnation
        self._current: dict[int, str] = {}  # rank -> its latest sender
        self._active: _Slot | None = None
        self._digests: dict[int, list[tuple[RecordKind, DigestRecord]]] = {}
        for kind, record in contents.digests:
            self._digests.setdefault(record.index, []).append((kind, record))
        self.matched, self.last_match = 0, 0  # digests found equal, and the update of the last one
        self._weights: dict[int, np.ndarray] = {}  # version -> its weights, while a later packet needs them
        self._last_use: dict[int, int] = {}  # version -> the last update computed on it

    # -- the workers' turns --------------------------------------------------------------------------------
    def _park(self) -> None:
        """Keep the RNG state of the worker that has the process's RNGs."""
        if self._active is not None:
            self._active.rng = (torch.get_rng_state(), np.random.get_state())
            self._active = None

    def _take_turn(self, slot: _Slot) -> None:
        """Give `slot`'s worker the process's RNGs, keeping the state of the worker that had them."""
        if self._active is slot:
            return
        self._park()
        if slot.rng is not None:
            torch.set_rng_state(slot.rng[0])
            np.random.set_state(slot.rng[1])
            slot.rng = None
        self._active = slot

    def _worker_for(self, record: UpdateRecord) -> RolloutWorker | str:
        """The record's worker (a fresh one for a sender never seen: a restarted worker), or what is wrong."""
        slot = self._slots.get(record.sender)
        if record.sender in self._retired:
            return f"sender {record.sender} pushes again after worker {record.rank} restarted"
        if slot is None:
            previous = self._current.get(record.rank)
            if previous is not None:  # the live one's process was gone
                self._retired.add(previous)
                self._slots.pop(previous).worker.close()
            self._park()
            slot = _Slot(RolloutWorker(self.config, record.rank))  # seeds torch as the live worker did
            self._slots[record.sender], self._current[record.rank], self._active = slot, record.sender, slot
        elif self._current.get(record.rank) != record.sender:
            return f"sender {record.sender} is not worker {record.rank}'s current incarnation"
        self._take_turn(slot)
        return slot.worker

    # -- one update ----------------------------------------------------------------------------------------
    def _replay(self, record: UpdateRecord) -> str:
        """Recompute and apply one packet; "" when the PS's record of it matches the log's, else how not."""
        worker = self._worker_for(record)
        if isinstance(worker, str):
            return worker
        if worker.version != record.version:
            if record.version not in self._weights:
                return f"its version {record.version} was never reached (the replay is at {self.ps.version})"
            worker.set_weights(self._weights[record.version], record.version)
        try:
            which = Pass(record.kind)
        except ValueError:
            return f"the log names no pass for it ({record.kind!r})"
        self.ps.apply_gradients(worker.compute(which))
        (got,) = [r for kind, r in self._sink.take() if kind == RecordKind.UPDATE]
        self._keep_weights(record.index)
        return ", ".join(
            f"{name} {getattr(got, name)} (the log: {getattr(record, name)})"
            for name in COMPARED_FIELDS
            if not _same(getattr(got, name), getattr(record, name))
        )

    def _keep_weights(self, index: int) -> None:
        """Keep the current version's weights while a later packet was computed on them; drop the rest."""
        version = self.ps.version
        if self._last_use.get(version, -1) > index and version not in self._weights:
            self._weights[version] = self.ps.get_weights()[1]
        for done in [v for v in self._weights if self._last_use.get(v, -1) <= index]:
            del self._weights[done]

    def _check_digests(self, index: int) -> str:
        """The log's digests after update `index` against the replayed weights; "" when all match."""
        for kind, record in self._digests.get(index, []):
            mine = weights_digest(self.ps.flat.flat)
            if mine != record.digest or record.version != self.ps.version:
                return (
                    f"the weights after it (version {self.ps.version}, digest {mine}) differ from the log's "
                    f"{kind.name.lower()} line (version {record.version}, digest {record.digest}); "
                    f"they last matched after update {self.last_match}"
                )
            self.matched, self.last_match = self.matched + 1, index
        return ""

    # -- the whole run -------------------------------------------------------------------------------------
    def run(self, updates: list[UpdateRecord], target: tuple[str, dict, int] | None) -> ReplayOutcome:
        """Replay `updates`; `target`: (path, model state, update index) of a checkpoint to compare at the end."""
        for record in updates:
            self._last_use[record.version] = record.index
        self._keep_weights(0)
        header = self.contents.headers[0]
        if self.init_digest != header.init_digest:
            return _diverged(0, None, f"the initial weights' digest {self.init_digest} is not the log's")
        snapshot = self._state() if target is not None and target[2] == 0 else None
        problem, failed = self._check_digests(0), None
        last_said = time.monotonic()
        for record in updates:
            if problem:
                break
            problem, failed = self._replay(record) or self._check_digests(record.index), record
            if target is not None and record.index == target[2]:
                snapshot = self._state()
            if time.monotonic() - last_said > PROGRESS_EVERY_S:
                last_said = time.monotonic()
                self.say(f"replay: {record.index:,} of {len(updates):,} updates, version {self.ps.version:,}")
        self.close()
        if problem:
            return _diverged(failed.index if failed else 0, failed, problem)
        return self._verdict(len(updates), target, snapshot)

    def _state(self) -> dict:
        return {k: t.clone() for k, t in self.ps.model.state_dict().items()}

    def _verdict(self, replayed: int, target: tuple | None, snapshot: dict | None) -> ReplayOutcome:
        digests = f"{self.matched} digest(s) matched"
        if target is None or snapshot is None:  # replay_run made sure there is a digest
            text = f"replayed {replayed} updates: weights identical to the log's digests ({digests}, the last after "
            return ReplayOutcome(replayed, True, text + f"update {self.last_match}); no checkpoint holds one of them")
        path, state, index = target
        equal = all(k in snapshot and torch.equal(snapshot[k], t) for k, t in state.items())
        diff = max(float((snapshot[k].double() - t.double()).abs().max()) for k, t in state.items() if k in snapshot)
        where = f"{os.path.basename(path)} (update {index})"
        if not equal:
            text = f"diverged: the replayed weights after update {index} differ from {where} (max abs diff {diff:g})"
            return ReplayOutcome(replayed, False, text, index, diff)
        text = f"replayed {replayed} updates: weights identical (max abs diff {diff}) to {where}; {digests}"
        return ReplayOutcome(replayed, True, text, max_abs_diff=diff)

    def close(self) -> None:
        for slot in self._slots.values():
            slot.worker.close()


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _diverged(index: int, record: UpdateRecord | None, problem: str) -> ReplayOutcome:
    who = f" (worker {record.rank}, version {record.version})" if record is not None else ""
    return ReplayOutcome(index, False, f"diverged: first digest mismatch at update {index}{who}: {problem}", index)


def checkpoint_target(run_dir: str, contents: LogContents, say: Callable[[str], None]) -> tuple[str, dict, int] | None:
    """The run's newest ckpt-<version>.pt and the update it holds (the log's checkpoint line with its
    counters), or None when there is none or the log names none for it (said)."""
    found = checkpoint.list_checkpoints(os.path.join(run_dir, "checkpoints"))
    if not found:
        return None
    state = checkpoint.load(found[-1])
    counters = PSCounters.from_dict(state.get(CKPT_COUNTERS))
    held = [
        r
        for kind, r in contents.digests
        if kind == RecordKind.CHECKPOINT and (r.version, r.env_steps) == (counters.version, counters.env_steps)
    ]
    if not held:
        say(f"note: the log has no checkpoint line for {found[-1]} (version {counters.version}): digests only")
        return None
    return found[-1], state[CKPT_MODEL], held[-1].index


def replay_run(run_dir: str, max_updates: int | None = None, say: Callable[[str], None] = print) -> ReplayOutcome:
    """Replay the run in `run_dir` (its first `max_updates` updates, else all) and compare with its log's
    digests and its newest checkpoint. A run replay does not cover is an A3CError."""
    path = os.path.join(run_dir, LOG_FILE)
    if not os.path.isdir(run_dir):
        raise A3CError(f"run dir '{run_dir}' does not exist")
    if not os.path.isfile(path):
        raise A3CError(f"'{run_dir}' has no update log ({LOG_FILE}): it was trained with run.update_log=false")
    if max_updates is not None and max_updates < 1:
        raise A3CError("--updates must be >= 1")
    contents = read_log(path)
    config = replayable_config(contents, path)
    updates = contents.updates[:max_updates]
    target = checkpoint_target(run_dir, contents, say)
    if target is not None and target[2] > len(updates):
        target = None
    if target is None and not any(r.index <= len(updates) for _, r in contents.digests):
        raise A3CError(
            f"nothing to compare the first {len(updates)} updates' weights with: no digest of the log and no "
            f"checkpoint falls within them (digests every {contents.headers[0].digest_every} updates)"
        )
    header = contents.headers[0]
    if header.torch_version != torch.__version__:
        say(f"note: the run used torch {header.torch_version}, this is {torch.__version__}: kernels may differ")
    say(f"replaying {len(updates):,} updates of {config.run.num_workers} workers (seed {header.seed}) from {path}")
    return Replayer(config, contents, say).run(updates, target)
