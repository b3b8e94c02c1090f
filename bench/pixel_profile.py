"""Where one agent step's time goes on pixels, and what these cores allow (`python -m bench.pixel_profile`).

One worker of a preset runs in this process against an in-process parameter server (no Ray, one torch thread,
as a worker actor runs), every part of its loop timed: env stepping, inference, each pass's loss and backward,
the packet's encoding, the PS's apply, adopting the weights. Ray's share is measured apart: one round trip of a
packet-sized gradient to an actor and of the weights back. The limits: the engine alone (the ALE through
AtariVectorEnv with 1 and 2 threads, the wrapper pipeline; ViZDoom's engine), and the CNN's forward at the
inference batch and forward + backward at a pass's batch, with the layouts torch offers on this CPU.

`--write` puts the tables in BENCHMARKS.md's "Pixel profile" section (its newest run).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import defaultdict
from dataclasses import replace

import numpy as np
import torch

from bench.common import fail, machine, today, update_section

PRESETS = ("atari", "vizdoom_basic", "vizdoom_defend_the_center")
SECTION = "Pixel profile"


class Clock:
    """Seconds spent per named part, summed."""

    def __init__(self):
        self.spent: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def part(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.spent[name] += time.perf_counter() - t0


def _timed(clock: Clock, name: str, fn):
    def wrapper(*args, **kwargs):
        with clock.part(name):
            return fn(*args, **kwargs)

    return wrapper


def worker_profile(preset: str, rollouts: int, overrides: dict) -> tuple[dict, int]:
    """-> (seconds per part, agent steps) over `rollouts` rollouts of one in-process worker and its passes."""
    import ray_a3c.actors.worker as worker_module
    from ray_a3c.actors.worker import RolloutWorker, passes
    from ray_a3c.common.settings.config import from_dict, from_flat, load_yaml
    from ray_a3c.learner.parameter_server import ParameterServer

    config = from_flat(overrides, from_dict(load_yaml(preset)))
    worker = RolloutWorker(config, rank=0)
    ps = ParameterServer(config, worker.runner.spaces)
    clock = Clock()
    worker.runner.venv.step = _timed(clock, "env step", worker.runner.venv.step)
    worker._flat_grads = _timed(clock, "packet encode", worker._flat_grads)
    collect = worker_module.collect_rollout
    worker_module.collect_rollout = _timed(clock, "collect", collect)
    apply, adopt = _timed(clock, "PS apply", ps.apply_gradients), _timed(clock, "adopt weights", worker._adopt)
    version, weights, _ = ps.get_weights()
    worker.set_weights(weights, version)
    plan, steps = passes(config.algo), 0
    try:
        for rollout in range(rollouts + 1):
            if rollout == 1:
                clock.spent.clear()  # the first rollout allocates: not counted
                steps = 0
            for which in plan:
                with clock.part("passes"):
                    packet = worker.compute(which)
                steps += packet.env_steps
                adopt(apply(packet))
    finally:
        worker_module.collect_rollout = collect
        worker.close()
    spent = dict(clock.spent)
    passes_s, collect_s = spent.pop("passes"), spent.pop("collect")
    spent["inference"] = collect_s - spent["env step"]
    spent[f"loss + backward ({len(plan)} passes)"] = passes_s - collect_s - spent["packet encode"]
    return spent, steps


def ray_round_trip(num_floats: int, trips: int) -> float:
    """Seconds per round trip: a float32 vector of `num_floats` to an actor and one of the same size back."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:

        @ray.remote
        class Echo:
            def __init__(self, n: int):
                self.weights = np.zeros(n, np.float32)

            def apply(self, gradient: np.ndarray) -> np.ndarray:
                return self.weights

        echo = Echo.remote(num_floats)
        gradient = np.ones(num_floats, np.float32)
        ray.get(echo.apply.remote(gradient))
        t0 = time.perf_counter()
        for _ in range(trips):
            ray.get(echo.apply.remote(gradient))
        return (time.perf_counter() - t0) / trips
    finally:
        ray.shutdown()


def engine_rates(num_envs: int, steps: int) -> dict:
    """Frames per second of the ALE alone (random actions) through AtariVectorEnv, and of the wrapper pipeline."""
    from ale_py.vector_env import AtariVectorEnv

    from ray_a3c.common.env.envs import make_vector_env
    from ray_a3c.common.settings.config import from_dict, load_yaml

    rates = {}
    rng = np.random.default_rng(0)
    for threads in (1, 2):
        env = AtariVectorEnv("pong", num_envs, num_threads=threads, repeat_action_probability=0.25)
        rates[f"ALE AtariVectorEnv, {threads} thread(s)"] = _frames_per_s(env, steps, rng)
    cfg = from_dict(load_yaml("atari")).env
    for label, native in (("ray-a3c's AleVectorEnv (1 thread)", True), ("the gymnasium wrapper pipeline", False)):
        rates[label] = _frames_per_s(make_vector_env(replace(cfg, ale_vector=native), num_envs, 0), steps, rng)
    return rates


def _frames_per_s(env, steps: int, rng) -> float:
    env.reset(seed=0)
    n = env.num_envs
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, env.single_action_space.n, n).astype(np.int32))
    rate = steps * n * 4 / (time.perf_counter() - t0)
    env.close()
    return rate


def preset_model(preset: str) -> tuple:
    """(the preset's freshly built network, its input shape: [C, H, W] for images, else [obs_dim])."""
    from ray_a3c.common.algo.models import build_model
    from ray_a3c.common.env.envs import probe_spaces
    from ray_a3c.common.settings.config import from_dict, load_yaml

    config = from_dict(load_yaml(preset))
    spaces = probe_spaces(config.env)
    shape = tuple(spaces.image_shape) if spaces.image_shape else (spaces.obs_dim,)
    return build_model(spaces, config.model), shape


def cnn_rates(model, shape: tuple, inference_batch: int, pass_batch: int, repeats: int) -> dict:
    """Milliseconds per CNN forward at the inference batch and forward + backward at a pass's batch, per layout."""
    rows = {}
    for layout in ("float32", "bf16 autocast", "channels_last weights", "channels_last + bf16"):
        if layout.startswith("channels_last"):
            model = model.to(memory_format=torch.channels_last)
        x_inf, x_pass = _batch(inference_batch, shape), _batch(pass_batch, shape)
        cast = torch.autocast("cpu", torch.bfloat16) if "bf16" in layout else contextlib.nullcontext()
        with cast:
            rows[layout] = (
                _ms(lambda x=x_inf, m=model: _forward(m, x), repeats),
                _ms(lambda x=x_pass, m=model: _forward_backward(m, x), max(3, repeats // 4)),
            )
    return rows


def _batch(n: int, shape: tuple) -> torch.Tensor:
    return torch.randint(0, 255, (1, n, *shape), dtype=torch.uint8)


@torch.no_grad()
def _forward(model, x) -> None:
    model.unroll(x)


def _forward_backward(model, x) -> None:
    dist, values, _ = model.unroll(x)
    (values.sum() + dist.entropy().sum()).backward()


def _ms(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats * 1e3


def profile_table(parts: dict, steps: int) -> list[str]:
    total = sum(parts.values())
    rows = ["| part | us per agent step | share |", "|---|---|---|"]
    for name, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        rows.append(f"| {name} | {seconds / steps * 1e6:,.0f} | {seconds / total:.0%} |")
    rows.append(
        f"| **one worker, one core, no Ray** | {total / steps * 1e6:,.0f} | {steps / total:,.0f} agent steps/s |"
    )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="atari", choices=PRESETS)
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for the preset")
    parser.add_argument("--compare", default="", metavar="KEY=VALUE", help="a second profile with this override")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md's section")
    args = parser.parse_args(argv)
    if args.rollouts < 1:
        fail("--rollouts must be >= 1")
    from ray_a3c.common.settings.config import parse_override

    torch.set_num_threads(1)
    overrides = dict(parse_override(item) for item in args.set)
    lines = [f"`python -m bench.pixel_profile {' '.join(argv or [])}`".replace(" `", "`"), ""]
    lines += [f"{machine()}, {today()}; preset `{args.preset}`, {args.rollouts} rollouts and their passes.", ""]
    variants = [("as configured", overrides)]
    if args.compare:
        key, value = parse_override(args.compare)
        variants.append((f"{key}={value}", {**overrides, key: value}))
    for label, variant in variants:
        parts, steps = worker_profile(args.preset, args.rollouts, variant)
        lines += [f"**{label}**", "", *profile_table(parts, steps), ""]
    if args.preset == "atari":
        rates = engine_rates(16, 300)
        lines += ["| engine alone, 16 Pong envs, random actions | frames/s |", "|---|---|"]
        lines += [f"| {name} | {rate:,.0f} |" for name, rate in rates.items()] + [""]
    model, shape = preset_model(args.preset)
    trip_ms = ray_round_trip(sum(p.numel() for p in model.parameters()), 50) * 1e3
    lines += [f"Ray, one push's round trip (a float32 gradient to an actor, the weights back): {trip_ms:.1f} ms", ""]
    config_rows = cnn_rates(model, shape, 16, 256, 20)
    lines += [
        "| CNN, one torch thread | forward, batch 16 (ms) | forward + backward, batch 256 (ms) |",
        "|---|---|---|",
    ]
    lines += [f"| {layout} | {fwd:.2f} | {fb:.1f} |" for layout, (fwd, fb) in config_rows.items()]
    text = "\n".join(lines)
    print(text)
    if args.write:
        update_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
