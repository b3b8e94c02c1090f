"""The parameter server's update log, RUN_DIR/updates.log: one line per packet the PS judged (applied or
rejected), in the order it judged them, and a digest of its weights every few updates, at each checkpoint and
at the end. `a3c replay` (learner/replay.py) recomputes the run from it in one process.

Plain text, one record a line, its first token the record's kind (`RecordKind`); a header's body is JSON, the
other records' fields are space-separated in their dataclass's field order. Written through an ordinary
buffered file, flushed at each digest, checkpoint and at close: a PS that crashes loses at most the lines since
the last digest (and a run whose PS was recreated is not replayable anyway)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
import os
import typing
import warnings
import zlib
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import numpy as np
import torch

from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.wire.packet import GradientPacket

LOG_FILE = "updates.log"
LOG_FORMAT = 1  # the header's `format`; a reader refuses any other
APPLIED = "applied"  # an update record's verdict when the packet was applied (else the Rejection's value)
NO_VALUE = "-"  # an empty text field (an untracked sender, an aggregate's pass), so that lines split on spaces


class RecordKind(str, Enum):
    """A line's first token."""

    HEADER = "H"  # one per PS incarnation: seeds, config, initial weights' digest
    UPDATE = "U"  # one packet judged
    DIGEST = "D"  # the weights every run.update_log_digest_every updates
    CHECKPOINT = "C"  # the weights when the PS's state was taken for a checkpoint
    END = "E"  # the weights when the log was closed (the run's end)
    RESTORED = "R"  # the PS loaded a checkpoint (a resume, a PS recovery): the log's updates stop being one run


@dataclass
class LogHeader:
    format: int
    seed: int  # run.seed (worker r seeds torch and its envs from seed + r)
    config_yaml: str  # the config the PS (and every worker) was given
    config_sha256: str
    init_digest: str  # `weights_digest` of the PS's initial weights
    device: str  # where the PS stepped
    digest_every: int | None  # updates between digest records
    torch_version: str
    numpy_version: str


@dataclass
class UpdateRecord:
    index: int  # packets this PS has judged, this one included (from 1)
    rank: int  # the worker's rank
    sender: str  # the worker's incarnation (a restarted worker has a new one)
    seq: int  # the sender's packet number, from 1
    version: int  # the weights' version the gradient was computed on
    kind: str  # the worker's pass (actors.worker.Pass value)
    env_steps: int
    episodes: int  # episodes finished in the packet's rollout
    verdict: str  # APPLIED or the Rejection's value
    grad_norm: float  # the gradient's global norm as the PS measured it (before clipping): its fingerprint


@dataclass
class DigestRecord:
    """A DIGEST, CHECKPOINT or END line: the weights after update `index`."""

    index: int
    version: int
    env_steps: int
    digest: str


@dataclass
class RestoredRecord:
    index: int
    version: int  # the version loaded (counters floors included)


Record = LogHeader | UpdateRecord | DigestRecord | RestoredRecord
_CLASSES: dict[RecordKind, type] = {
    RecordKind.UPDATE: UpdateRecord,
    RecordKind.DIGEST: DigestRecord,
    RecordKind.CHECKPOINT: DigestRecord,
    RecordKind.END: DigestRecord,
    RecordKind.RESTORED: RestoredRecord,
}
_FIELDS = {
    cls: [(f.name, typing.get_type_hints(cls)[f.name]) for f in dataclasses.fields(cls)] for cls in _CLASSES.values()
}
_VALUES = {
    cls: operator.attrgetter(*(name for name, _ in fields)) for cls, fields in _FIELDS.items()
}  # a line per packet


def weights_digest(flat: torch.Tensor) -> str:
    """crc32 of the flat float32 weight buffer's bytes (parameters then buffers, the PS's layout), as 8 hex
    digits: one equal bit for bit iff the weights are (barring a 1 in 4e9 collision)."""
    values = flat.detach()
    array = values.numpy() if values.device.type == "cpu" else values.cpu().numpy()
    return f"{zlib.crc32(np.ascontiguousarray(array)):08x}"


def format_record(kind: RecordKind, record: Record) -> str:
    """One line, without its newline."""
    if kind == RecordKind.HEADER:
        return f"{kind.value} {json.dumps(dataclasses.asdict(record), sort_keys=True)}"
    return kind.value + " " + " ".join([str(v) or NO_VALUE for v in _VALUES[type(record)](record)])


def parse_record(line: str) -> tuple[RecordKind, Record]:
    """The inverse of `format_record`; a malformed line raises ValueError."""
    tag, _, body = line.rstrip("\n").partition(" ")
    kind = RecordKind(tag)
    if kind == RecordKind.HEADER:
        data = json.loads(body)
        return kind, LogHeader(**{f.name: data[f.name] for f in dataclasses.fields(LogHeader)})
    cls = _CLASSES[kind]
    tokens = body.split(" ")
    fields = _FIELDS[cls]
    if len(tokens) != len(fields):
        raise ValueError(f"{len(tokens)} fields, expected {len(fields)}")
    return kind, cls(**{name: "" if t == NO_VALUE else hint(t) for (name, hint), t in zip(fields, tokens, strict=True)})


class Sink(Protocol):
    """Where the lines go: a text file, or a LineBuffer (the replay's own PS)."""

    def write(self, text: str) -> Any: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class LineBuffer:
    """A Sink that keeps the lines in memory until `take`."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def write(self, text: str) -> None:
        self._lines.append(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> list[tuple[RecordKind, Record]]:
        lines, self._lines = self._lines, []
        return [parse_record(line) for line in lines]


class UpdateLog:
    """What the PS writes: `start` once, `judged` after each step, `checkpoint`, `restored`, `close`."""

    def __init__(self, sink: Sink, digest_every: int | None):
        self._sink, self.digest_every = sink, digest_every
        self.index = 0  # packets judged so far

    @classmethod
    def open(cls, run_dir: str, digest_every: int) -> UpdateLog | None:
        """Append to RUN_DIR/updates.log (a resumed or recreated PS adds its own header after the first); None,
        with a warning, when the run dir is not on this node (a PS on another machine than the driver's)."""
        if not os.path.isdir(run_dir):
            warnings.warn(f"no update log: the run dir {run_dir} is not on the parameter server's node", stacklevel=2)
            return None
        return cls(open(os.path.join(run_dir, LOG_FILE), "a", encoding="utf-8"), digest_every)

    def _write(self, kind: RecordKind, record: Record) -> None:
        self._sink.write(format_record(kind, record) + "\n")

    def start(self, config_yaml: str, seed: int, device: str, weights: torch.Tensor) -> None:
        self._write(
            RecordKind.HEADER,
            LogHeader(
                format=LOG_FORMAT,
                seed=seed,
                config_yaml=config_yaml,
                config_sha256=hashlib.sha256(config_yaml.encode()).hexdigest(),
                init_digest=weights_digest(weights),
                device=device,
                digest_every=self.digest_every,
                torch_version=torch.__version__,
                numpy_version=np.__version__,
            ),
        )
        self._sink.flush()

    def judged(
        self,
        packets: list[GradientPacket],
        reasons: list[str],
        grad_norms: list[float],
        version: int,
        env_steps: int,
        weights: torch.Tensor,
    ) -> None:
        """One record per packet of a step, then a digest when the step crossed a multiple of digest_every."""
        before = self.index
        for packet, reason, norm in zip(packets, reasons, grad_norms, strict=True):
            self.index += 1
            self._write(
                RecordKind.UPDATE,
                UpdateRecord(
                    index=self.index,
                    rank=packet.worker_rank,
                    sender=packet.routing.sender,
                    seq=packet.routing.seq,
                    version=packet.version,
                    kind=packet.pass_kind,
                    env_steps=packet.env_steps,
                    episodes=len(packet.episode_returns),
                    verdict=str(reason) if reason else APPLIED,
                    grad_norm=float(norm),
                ),
            )
        every = self.digest_every
        if every and self.index // every > before // every:
            self._digest(RecordKind.DIGEST, version, env_steps, weights)

    def _digest(self, kind: RecordKind, version: int, env_steps: int, weights: torch.Tensor) -> None:
        self._write(kind, DigestRecord(self.index, version, env_steps, weights_digest(weights)))
        self._sink.flush()

    def checkpoint(self, version: int, env_steps: int, weights: torch.Tensor) -> None:
        """The PS's state is being taken for a checkpoint: which update it holds, and its weights' digest."""
        self._digest(RecordKind.CHECKPOINT, version, env_steps, weights)

    def restored(self, version: int) -> None:
        self._write(RecordKind.RESTORED, RestoredRecord(self.index, version))
        self._sink.flush()

    def close(self, version: int, env_steps: int, weights: torch.Tensor) -> None:
        self._digest(RecordKind.END, version, env_steps, weights)
        self._sink.close()


@dataclass
class LogContents:
    """A whole log as read back: its headers, its update records in order, and its digest-bearing records."""

    headers: list[LogHeader]
    updates: list[UpdateRecord]
    digests: list[tuple[RecordKind, DigestRecord]]  # DIGEST, CHECKPOINT and END lines, in order
    restored: list[RestoredRecord]


def read_log(path: str) -> LogContents:
    """Every record of the log at `path`; a missing or malformed one is an A3CError naming the line. A last line
    cut short (a PS killed mid-write) is dropped."""
    if not os.path.isfile(path):
        raise A3CError(f"no update log at {path}")
    contents = LogContents([], [], [], [])
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()
    for number, line in enumerate(lines, start=1):
        if number == len(lines) and not line.endswith("\n"):
            break
        try:
            kind, record = parse_record(line)
        except (ValueError, KeyError, TypeError) as exc:
            raise A3CError(f"{path}:{number}: not an update-log record ({exc})") from None
        if kind == RecordKind.HEADER:
            contents.headers.append(record)
        elif kind == RecordKind.UPDATE:
            contents.updates.append(record)
        elif kind == RecordKind.RESTORED:
            contents.restored.append(record)
        else:
            contents.digests.append((kind, record))
    if not contents.headers:
        raise A3CError(f"{path} has no header line")
    return contents
