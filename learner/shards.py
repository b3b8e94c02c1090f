"""A parameter server split into shards: which part of the flat parameter vector each shard owns, and the
pure functions that cut a worker's packet into per-shard packets and put the shards' weight slices back
together. No Ray here: cluster/comms/remote.py runs one ParameterServer per shard as an actor.

Each optimizer group's contiguous range of the PS's flat buffer (learner/flat_params.py: `all`, or `actor`
then `critic`) is cut into `num_shards` consecutive ranges, shard s owning range s of every group, so every
shard's optimizer still steps one contiguous tensor per group. The cuts fall on multiples of ALIGN elements
from the group's start: the fused Adam kernel then meets every element at the same vector lane as an unsplit
PS does, and S shards produce bit-identical weights to one PS on the same packet sequence. Shard 0 also owns
the buffers (observation / return statistics): it is the lead, the one that keeps counters and statistics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ray_a3c.common.algo.models import build_model
from ray_a3c.common.wire.flat import finite_norm, gradient_tensor
from ray_a3c.common.wire.packet import ApplyResult, GradientPacket
from ray_a3c.learner.flat_params import FlatParameters, parameter_groups

ALIGN = 1024  # elements: shard cuts fall on multiples of this from each group's start
LEAD = 0  # the shard that owns the buffers and keeps the run's counters and statistics


@dataclass(frozen=True)
class ShardSlice:
    """What one shard owns. Its gradient slice is the wire gradient's `grad_chunks` concatenated (in the
    shard's flat order); its published weights are the same pieces, then (the lead) the buffers."""

    index: int
    ranges: tuple[tuple[str, int, int], ...]  # (group, start, end) in the PS's flat buffer, in flat order
    grad_chunks: tuple[tuple[int, int], ...]  # (offset in the wire gradient, length), in the shard's order
    weight_chunks: tuple[tuple[int, int], ...]  # (offset in the wire weights, length): grad_chunks + buffers

    @property
    def num_grad_values(self) -> int:
        return sum(n for _, n in self.grad_chunks)

    @property
    def num_weight_values(self) -> int:
        return sum(n for _, n in self.weight_chunks)


@dataclass(frozen=True)
class ShardPlan:
    num_params: int  # P: the wire gradient's length
    num_weights: int  # W: the wire weight vector's length (parameters, then buffers)
    group_ranges: tuple[tuple[str, int, int], ...]  # every group's (name, start, end) in the flat buffer
    shards: tuple[ShardSlice, ...]

    @property
    def num_shards(self) -> int:
        return len(self.shards)


def cut_points(start: int, end: int, num_shards: int, align: int = ALIGN) -> list[int]:
    """num_shards + 1 boundaries from start to end, as even as multiples of `align` from start allow, the first
    shards taking the odd blocks (a range shorter than num_shards * align leaves the last shards empty)."""
    size = end - start
    blocks = -(-size // align)
    return [start] + [min(end, start + align * -(-blocks * k // num_shards)) for k in range(1, num_shards)] + [end]


def plan_from_layout(
    group_ranges: dict[str, tuple[int, int]],
    chunks: list[tuple[int, int, int]],
    num_params: int,
    num_weights: int,
    num_shards: int,
) -> ShardPlan:
    """The plan for a flat layout: `group_ranges` (name -> flat range), `chunks` the (wire offset, flat offset,
    length) runs that map the wire parameter order onto the flat buffer (FlatParameters.grad_chunks)."""
    layout = tuple((name, a, b) for name, (a, b) in group_ranges.items())
    if num_shards == 1:  # an unsharded PS takes and publishes whole vectors in wire order
        return ShardPlan(
            num_params, num_weights, layout, (ShardSlice(0, layout, ((0, num_params),), ((0, num_weights),)),)
        )
    cuts = {name: cut_points(a, b, num_shards) for name, (a, b) in group_ranges.items()}
    shards = []
    for s in range(num_shards):
        ranges = tuple((name, cuts[name][s], cuts[name][s + 1]) for name in group_ranges)
        pieces = [piece for _, lo, hi in ranges for piece in _wire_pieces(chunks, lo, hi)]
        buffers = [(num_params, num_weights - num_params)] if s == LEAD and num_weights > num_params else []
        shards.append(ShardSlice(s, ranges, tuple(pieces), tuple(pieces + buffers)))
    return ShardPlan(num_params, num_weights, layout, tuple(shards))


def _wire_pieces(chunks: list[tuple[int, int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """The wire (offset, length) runs that hold flat positions [lo, hi), in flat order."""
    pieces = []
    for wire, at, n in sorted(chunks, key=lambda c: c[1]):
        a, b = max(at, lo), min(at + n, hi)
        if a < b:
            pieces.append((wire + a - at, b - a))
    return pieces


def plan_for(config, spaces) -> ShardPlan:
    """The plan of `config`'s network on `spaces` over learner.num_shards shards (builds a throwaway model)."""
    model = build_model(spaces, config.model)
    flat = FlatParameters(model, parameter_groups(model))
    return plan_from_layout(flat.slices, flat.grad_chunks, flat.num_params, flat.num_weights, config.learner.num_shards)


def gather(vector: np.ndarray, chunks: tuple[tuple[int, int], ...]) -> np.ndarray:
    """vector's `chunks` concatenated ([sum of lengths]); one chunk is a view, no copy."""
    if len(chunks) == 1:
        at, n = chunks[0]
        return vector[at : at + n]
    return np.concatenate([vector[at : at + n] for at, n in chunks]) if chunks else vector[:0]


def scatter(out: np.ndarray, chunks: tuple[tuple[int, int], ...], part: np.ndarray) -> None:
    """The inverse of `gather`: writes `part` back into `out`'s chunks."""
    at_part = 0
    for at, n in chunks:
        out[at : at + n] = part[at_part : at_part + n]
        at_part += n


def split_packet(packet: GradientPacket, plan: ShardPlan, versions: list[int]) -> list[GradientPacket]:
    """One packet per shard: shard s gets its gradient slice, stamped with versions[s] (the shard version the
    sender's weights came from) and the whole gradient's global norm (clipping and the finiteness check, which
    no shard could compute from its slice). Every shard counts the env steps (its learning-rate schedule
    follows them) and sees the moments (so each judges finiteness alike); only the lead gets the episodes,
    losses and env hangs it reports."""
    if plan.num_shards == 1:  # an unsharded PS takes the whole gradient in wire order, and measures its norm
        return [dataclasses.replace(packet.rerouted(shard_versions=None), version=versions[0])]
    norm = packet.routing.grad_norm
    norm = finite_norm(gradient_tensor(packet.gradient)) if norm is None else norm
    # each part carries its own shard's version, and the whole gradient's norm
    routing = dataclasses.replace(packet.routing, shard_versions=None, grad_norm=norm)
    parts = []
    for shard in plan.shards:
        lead = shard.index == LEAD
        parts.append(
            dataclasses.replace(
                packet,
                gradient=gather(packet.gradient, shard.grad_chunks),
                version=versions[shard.index],
                routing=routing,
                episode_returns=packet.episode_returns if lead else [],
                episode_lengths=packet.episode_lengths if lead else [],
                losses=packet.losses if lead else {},
                env_hangs=packet.env_hangs if lead else [],
            )
        )
    return parts


def shard_version(packet: GradientPacket, index: int) -> int:
    """The version of shard `index` that the sender's weights came from (`version` when it sent none per shard)."""
    versions = packet.routing.shard_versions
    return versions[index] if versions is not None else packet.version


def join_replies(replies: list[ApplyResult | None]) -> ApplyResult:
    """The shards' answers to one packet (None: a shard other than the lead that failed) as the sender counts
    them: the lead's verdict and version (the lead keeps the run's counters), a stop if any shard says so. The
    weights are left out: the caller writes each reply's slice into its whole vector (`scatter`)."""
    lead = replies[LEAD]
    return ApplyResult(
        accepted=lead.accepted,
        version=lead.version,
        reason=lead.reason,
        stop=any(r.stop for r in replies if r is not None),
    )


def shard_range(plan: ShardPlan, index: int, group: str) -> tuple[int, int]:
    """Shard `index`'s part of `group` as (start, end) offsets within that group's own tensor."""
    group_start = next(a for name, a, _ in plan.group_ranges if name == group)
    _, lo, hi = next(r for r in plan.shards[index].ranges if r[0] == group)
    return lo - group_start, hi - group_start


def merge_optimizer_states(plan: ShardPlan, per_shard: list[dict]) -> dict:
    """The optimizer state dicts of an unsharded PS from each shard's ({group: state dict}, in shard order):
    each group's moment tensors are its shards' parts concatenated. The step count is the lead's (shards
    that refused a stale packet the lead took may be a step apart; it only scales Adam's bias correction). A
    shard that has not stepped yet contributes zeros, the state a fresh optimizer starts from."""
    merged = {}
    for name, start, end in plan.group_ranges:
        owners = [(s, states[name]) for s, states in enumerate(per_shard) if name in states]
        stepped = [st["state"][next(iter(st["state"]))] for _, st in owners if st["state"]]
        group = dict(owners[0][1]["param_groups"][0], params=[0])
        if not stepped:
            merged[name] = {"state": {}, "param_groups": [group]}
            continue
        template = stepped[0]
        values = {}
        for key, value in template.items():
            if not isinstance(value, torch.Tensor) or value.dim() == 0:
                values[key] = value
                continue
            parts = []
            for s, st in owners:
                lo, hi = shard_range(plan, s, name)
                parts.append(st["state"][next(iter(st["state"]))][key] if st["state"] else torch.zeros(hi - lo))
            values[key] = torch.cat(parts)
            if values[key].numel() != end - start:
                raise ValueError(f"the shards' '{name}' {key} has {values[key].numel()} values, not {end - start}")
        merged[name] = {"state": {0: values}, "param_groups": [group]}
    return merged
