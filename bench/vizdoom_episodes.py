"""What ends a ViZDoom checkpoint's episodes: kills, ammo and health left, length, and how often it presses
each button, over fresh episodes (a diagnosis, not a race: it shows whether a policy runs out of ammo, wastes
shots or dies with bullets left).

    .venv/bin/python -m bench.vizdoom_episodes RUN_DIR [--checkpoint best] [--episodes 30] [--seed 1000]
        [--policy greedy|sample]

Prints one JSON line: means over the episodes (return, length, kills, shots = ammo spent, hit share = kills per
shot, ammo left, episodes that ended with no ammo, health on the last step before the end, button shares).
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def play(run_dir: str, checkpoint: str, episodes: int, seed: int, policy_kind: str) -> dict:
    import torch
    import vizdoom as vzd

    from ray_a3c.api import load_policy
    from ray_a3c.common.env.envs import make_policy_env, scoring_env_config
    from ray_a3c.common.env.observations import encode_obs
    from ray_a3c.common.settings.config import load_run_config

    policy = load_policy(run_dir, checkpoint)
    env = make_policy_env(scoring_env_config(load_run_config(run_dir).env))
    game, buttons = env.unwrapped.game, env.action_space.n
    generator = torch.Generator().manual_seed(seed)
    names = ("AMMO2", "HEALTH", "KILLCOUNT")
    rows = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        state = policy.initial_state()
        start_ammo = game.get_game_variable(vzd.GameVariable.AMMO2)
        total, steps, presses, last = 0.0, 0, np.zeros(buttons), None
        while True:
            last = [game.get_game_variable(getattr(vzd.GameVariable, n)) for n in names]
            if policy_kind == "greedy":
                action, state = policy.act(obs, state)
            else:  # as the evaluator's `sample` policy: drawn from the logits, seeded
                state = None if state is None else tuple(torch.as_tensor(np.asarray(t)) for t in state)
                with torch.no_grad():
                    logits, _, state = policy.graph.model.head_outputs(
                        torch.as_tensor(encode_obs(obs, policy.spaces))[None, None], state, None
                    )
                action = int(torch.multinomial(torch.softmax(logits.reshape(-1), 0), 1, generator=generator))
            presses[int(action)] += 1
            obs, reward, terminated, truncated, _ = env.step(action)
            total, steps = total + reward, steps + 1
            if terminated or truncated:
                break
        ammo, health, kills = last
        rows.append([total, steps, kills, start_ammo - ammo, ammo, ammo == 0, health, *(presses / steps)])
    env.close()
    mean = np.asarray(rows, np.float64).mean(0)
    shots = mean[3]
    return {
        "run_dir": run_dir,
        "checkpoint": checkpoint,
        "policy": policy_kind,
        "episodes": episodes,
        "seed": seed,
        "return": round(mean[0], 2),
        "length": round(mean[1], 1),
        "kills": round(mean[2], 2),
        "shots": round(shots, 2),
        "hit_share": round(mean[2] / shots, 3) if shots else None,
        "ammo_left": round(mean[4], 2),
        "out_of_ammo_share": round(mean[5], 3),
        "health_before_end": round(mean[6], 1),
        "button_shares": {b.name: round(s, 3) for b, s in zip(game.get_available_buttons(), mean[7:], strict=False)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--policy", choices=("greedy", "sample"), default="greedy")
    args = parser.parse_args()
    print(json.dumps(play(args.run_dir, args.checkpoint, args.episodes, args.seed, args.policy)))


if __name__ == "__main__":
    main()
