"""How many tokens two tokenizers (checkpoints or bundles) agree on, on held-out frames.

    python experiments/token_drift.py OLD NEW

A world model trained on OLD's tokens can be warm-started on NEW's
(`world_model.init_from=`), but what it learned about particular token ids carries over
only where the ids agree.
"""

import argparse

import numpy as np

from worldmodel.bundle import load_tokenizer
from worldmodel.data.datamodule import FrameEncoder
from worldmodel.data.held_out import held_out_frames
from worldmodel.envs import EnvSpec
from worldmodel.models.tokenizer import Tokenizer


def held_out_tokens(old: Tokenizer, new: Tokenizer, data_dir: str) -> tuple[np.ndarray, ...]:
    """The held-out frames' tokens (N, K) from either tokenizer."""
    for field in ("tokens_per_frame", "num_codes"):
        if getattr(old.cfg, field) != getattr(new.cfg, field):
            raise SystemExit(f"the tokenizers differ in {field}: their tokens cannot be compared")
    frames = held_out_frames(EnvSpec(frame_size=old.cfg.autoencoder.resolution), data_dir)
    # IRIS tokens are the frame's own: the action and next frame do not enter.
    actions = np.zeros(len(frames), np.int64)
    return FrameEncoder(old)(frames, actions, frames), FrameEncoder(new)(frames, actions, frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--data-dir", default="data/val")
    args = parser.parse_args()
    old, new = held_out_tokens(load_tokenizer(args.old), load_tokenizer(args.new), args.data_dir)
    same = old == new
    print(f"{len(old)} held-out frames")
    print(
        f"tokens equal: {same.mean():.1%}, frames with every token equal: {same.all(1).mean():.1%}"
    )


if __name__ == "__main__":
    main()
