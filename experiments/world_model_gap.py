"""Has the world model learned the game or memorised its replay buffer? Teacher-forced
accuracy on held-out play, for every frame token and for the tokens that changed since the
frame before (the ball and the paddles), as the training metrics define them:

    python experiments/world_model_gap.py BUNDLE [--out DIR]


Rows: the held-out tracker episodes that training validates on, and fresh episodes (a seed
training never used) of the training policy (`+exp=pong_tiny`: mixed tracker/random play).
Compare with `train/changed_token_accuracy` in the run's metrics.csv: a model that scores
far higher on its own batches than on fresh play of the same policy has memorised them.
"""

import argparse
import functools
from dataclasses import asdict, replace
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from worldmodel.bundle import load_bundle
from worldmodel.data.datamodule import FrameEncoder, HeldOutDataset
from worldmodel.data.episode import Episode
from worldmodel.data.held_out import DEFAULT, held_out_episodes
from worldmodel.envs.policies import TrackerPolicy
from worldmodel.eval.report import markdown_table, write_report
from worldmodel.lit.world_model_module import WorldModelModule
from worldmodel.train import CONFIG_DIR

FRESH_SEED = 777  # not a training seed (those derive from seed=0) nor the validation one


def training_policy(exp: str) -> functools.partial:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"+exp={exp}", "paths.root=.", "paths.output_dir=."])
    return instantiate(cfg.policy)


@torch.no_grad()
def accuracies(module: WorldModelModule, episodes: list[Episode]) -> dict[str, float]:
    """Token accuracy over back-to-back segments of max_frames, cut as validation cuts them."""
    segments = HeldOutDataset(
        episodes, "segments", module.cfg.max_frames, 1, FrameEncoder(module.tokenizer)
    )
    _, predictions = module.losses(segments[list(range(len(segments)))])  # all in one batch
    hits, changed = predictions["changed_counts"].tolist()
    return {
        "token_accuracy": float(predictions["token_accuracy"]),
        "changed_token_accuracy": hits / max(changed, 1),  # 0 if nothing moved
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
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
    module.world_model.load_state_dict(bundle.world_model.state_dict())
    sets = {
        "held-out tracker play (validation)": (
            functools.partial(TrackerPolicy),
            args.data_dir / "val",
            DEFAULT.seed,
        ),
        f"fresh play of the training policy (+exp={args.exp})": (
            training_policy(args.exp),
            args.data_dir / "gap",
            FRESH_SEED,
        ),
    }
    results, rows = {}, []
    for name, (policy, root, seed) in sets.items():
        episodes = held_out_episodes(bundle.spec, root, replace(DEFAULT, seed=seed), policy)
        results[name] = accuracies(module, episodes)
        rows.append(
            [
                name,
                f"{results[name]['token_accuracy']:.3f}",
                f"{results[name]['changed_token_accuracy']:.3f}",
            ]
        )
    write_report(
        args.out,
        "world_model_gap",
        f"Teacher-forced world-model accuracy of {args.bundle}",
        f"python experiments/world_model_gap.py {args.bundle}",
        markdown_table(["episodes", "token accuracy", "changed-token accuracy"], rows),
        results,
    )


if __name__ == "__main__":
    main()
