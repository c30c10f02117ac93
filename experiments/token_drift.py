"""How many tokens two tokenizers (checkpoints or bundles) agree on, on held-out frames.

    python experiments/token_drift.py OLD NEW

A world model trained on OLD's tokens can be warm-started on NEW's
(`world_model.init_from=`), but what it learned about particular token ids carries over
only where the ids agree.
"""

import argparse
import sys

import torch
from tokenizer_report import held_out_frames

from worldmodel.bundle import load_tokenizer
from worldmodel.envs import EnvSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--data-dir", default="data/val")
    args = parser.parse_args()
    old, new = load_tokenizer(args.old), load_tokenizer(args.new)
    for field in ("tokens_per_frame", "num_codes"):
        if getattr(old.cfg, field) != getattr(new.cfg, field):
            sys.exit(f"the tokenizers differ in {field}: their tokens cannot be compared")
    frames = torch.from_numpy(
        held_out_frames(EnvSpec(frame_size=old.cfg.autoencoder.resolution), args.data_dir)
    )
    with torch.inference_mode():
        same = torch.cat(
            [old.encode(chunk) == new.encode(chunk) for chunk in frames.split(256)]
        ).float()
    whole_frames = same.all(1).float().mean()
    print(f"{len(frames)} held-out frames")
    print(f"tokens equal: {same.mean():.1%}, frames with every token equal: {whole_frames:.1%}")


if __name__ == "__main__":
    main()
