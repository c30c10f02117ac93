"""A bundle from a world-model training checkpoint, to evaluate or play it mid-run:

    python experiments/checkpoint_bundle.py BASE_BUNDLE WM_CKPT --out NEW_BUNDLE

BASE_BUNDLE gives the tokenizer, game and config (it must be the tokenizer the checkpoint
was trained on); WM_CKPT (a world-model stage's Lightning checkpoint or another bundle)
gives the world model's weights and sizes (e.g. a bigger model on the base's
tokenizer). Training writes a bundle only when a stage ends.
"""

import argparse
from dataclasses import replace
from pathlib import Path

from worldmodel.bundle import (
    BundleError,
    load_bundle,
    load_weights,
    load_world_model_state,
    save_bundle,
)
from worldmodel.models.world_model import WorldModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("world_model", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    try:
        bundle = load_bundle(args.base)
        weights, sizes = load_world_model_state(args.world_model, bundle.tokenizer)
        config = replace(bundle.world_model.cfg, **sizes)
        world_model = WorldModel(config)
        load_weights(world_model, weights, f"{args.world_model}: another model size")
    except BundleError as err:
        raise SystemExit(f"error: {err}") from None
    save_bundle(
        args.out,
        bundle.tokenizer,
        world_model,
        bundle.spec,
        bundle.action_meanings,
        bundle.train_config,
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
