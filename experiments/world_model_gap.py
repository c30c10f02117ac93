"""Has the world model learned the game or memorised its replay buffer? Teacher-forced
accuracy on held-out play, for every frame token and for the tokens that changed since the
frame before (the ball and the paddles), as the training metrics define them:

    python experiments/world_model_gap.py BUNDLE [--world-model CKPT] [--out DIR]

Rows: the held-out tracker episodes that training validates on, and fresh episodes (a seed
training never used) of the training policy (`+exp=pong_tiny`: mixed tracker/random play).
Compare with `train/changed_token_accuracy` in the run's metrics.csv: a model that scores
far higher on its own batches than on fresh play of the same policy has memorised them.
"""

import argparse
import functools
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from report import markdown_table, write_report

from worldmodel.bundle import load_bundle, load_weights, load_world_model_weights
from worldmodel.data.datamodule import (
    VAL_EPISODES,
    VAL_MAX_STEPS,
    VAL_SEED,
    FrameEncoder,
    held_out_episodes,
)
from worldmodel.data.episode import Episode
from worldmodel.envs.policies import TrackerPolicy
from worldmodel.lit.world_model_module import WorldModelModule
from worldmodel.train import CONFIG_DIR

FRESH_SEED = 777  # not a training seed (those derive from seed=0) nor the validation one


def training_policy(exp: str) -> functools.partial:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"+exp={exp}", "paths.root=.", "paths.output_dir=."])
    return instantiate(cfg.policy)


@torch.no_grad()
def accuracies(module: WorldModelModule, episodes: list[Episode]) -> dict[str, float]:
    """Token accuracy over back-to-back segments of max_frames, as validation cuts them."""
    encode, length = FrameEncoder(module.tokenizer), module.cfg.max_frames
    hits = np.zeros(2)
    token_hits = []
    for episode in episodes:
        n = len(episode) // length * length
        segments = {
            "tokens": torch.from_numpy(encode(episode.frames[:n])).view(n // length, length, -1),
            "actions": torch.from_numpy(episode.actions[:n]).long().view(-1, length),
            "rewards": torch.from_numpy(episode.rewards[:n]).float().view(-1, length),
            "terminated": torch.from_numpy(episode.terminated[:n]).view(-1, length),
            "mask": torch.ones(n // length, length, dtype=torch.bool),
        }
        _, predictions = module.losses(segments)
        hits += predictions["changed_counts"].numpy()
        token_hits.append(float(predictions["token_accuracy"]))
    return {
        "token_accuracy": float(np.mean(token_hits)),
        "changed_token_accuracy": hits[0] / max(hits[1], 1),  # 0 if nothing moved
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--world-model", type=Path, help="a checkpoint's weights instead")
    parser.add_argument("--exp", default="pong_tiny", help="the experiment whose policy trained it")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, default=Path("experiments/reports/world_model_gap"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    bundle = load_bundle(args.bundle)
    cfg = asdict(bundle.world_model.cfg)
    module = WorldModelModule(
        model={k: v for k, v in cfg.items() if k not in ("tokens_per_frame", "num_codes")},
        tokenizer=bundle.tokenizer,
    ).eval()
    weights = bundle.world_model.state_dict()
    if args.world_model is not None:
        weights = load_world_model_weights(args.world_model, bundle.tokenizer)
    load_weights(module.world_model, weights, f"{args.world_model}: another model size")
    sets = {
        "held-out tracker play (validation)": (
            functools.partial(TrackerPolicy),
            args.data_dir / "val",
            VAL_SEED,
        ),
        f"fresh play of the training policy (+exp={args.exp})": (
            training_policy(args.exp),
            args.data_dir / "gap",
            FRESH_SEED,
        ),
    }
    results, rows = {}, []
    for name, (policy, root, seed) in sets.items():
        episodes = held_out_episodes(bundle.spec, policy, root, VAL_EPISODES, VAL_MAX_STEPS, seed)
        results[name] = accuracies(module, episodes)
        rows.append(
            [
                name,
                f"{results[name]['token_accuracy']:.3f}",
                f"{results[name]['changed_token_accuracy']:.3f}",
            ]
        )
    source = args.world_model or args.bundle
    write_report(
        args.out,
        "world_model_gap",
        f"Teacher-forced world-model accuracy of {source}",
        f"python experiments/world_model_gap.py {args.bundle}"
        + (f" --world-model {args.world_model}" if args.world_model else ""),
        markdown_table(["episodes", "token accuracy", "changed-token accuracy"], rows),
        results,
    )


if __name__ == "__main__":
    main()
