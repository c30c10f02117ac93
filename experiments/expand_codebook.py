"""Give a trained tokenizer more codes, to test whether its codebook is what limits it.

    python experiments/expand_codebook.py CKPT --num-codes 1024 --out NEW.ckpt
    python experiments/expand_codebook.py CKPT --per-position --out NEW.ckpt

Writes a copy of the tokenizer-stage checkpoint CKPT with a larger codebook, then resume it
like any checkpoint with the matching setting:

    python -m worldmodel.train stage=tokenizer ckpt_path=NEW.ckpt \
        tokenizer.module.model.num_codes=N ...                              # --num-codes N
        tokenizer.module.model.codebook_per_position=true ...               # --per-position

`--num-codes N`: the old codes unchanged, the new ones copies of random old ones (never
chosen: the nearest-code search picks the first of equals) marked dead, so the first
training step revives them onto the batch's worst-served encoder outputs (see
`VectorQuantizer.revive_dead_codes_`). Adam's moments for the new rows start at zero.

`--per-position`: every token position gets a copy of the codebook (and of its Adam
moments and idle counts), so the tokenizer encodes and decodes exactly as before and token
ids keep their meaning (a world model trained on the old tokens still fits). Codes a
position never uses then go idle and are revived onto what that position draws worst.
"""

import argparse
from pathlib import Path

import torch

from worldmodel.models.tokenizer import TokenizerConfig

CODEBOOK = "tokenizer.quantizer.codebook.weight"
IDLE = "tokenizer.quantizer.idle_steps"


def codebook_moments(checkpoint: dict) -> dict:
    """Adam's state for the codebook (the one parameter shaped like it)."""
    if not checkpoint.get("optimizer_states"):
        raise ValueError(
            "no optimizer state: pass a tokenizer-stage checkpoint (STAGE/checkpoints/*.ckpt)"
        )
    shape = checkpoint["state_dict"][CODEBOOK].shape
    states = checkpoint["optimizer_states"][0]["state"].values()
    moments = [s for s in states if s["exp_avg"].shape == shape]
    if len(moments) != 1:
        raise ValueError(
            f"expected one optimizer state shaped like the codebook, found {len(moments)}"
        )
    return moments[0]


def grow(checkpoint: dict, num_codes: int) -> dict:
    state, moments = checkpoint["state_dict"], codebook_moments(checkpoint)
    old = state[CODEBOOK]
    added = num_codes - len(old)
    if added <= 0:
        raise ValueError(f"the codebook already has {len(old)} codes")
    model = checkpoint["hyper_parameters"]["model"]
    config = TokenizerConfig(**model)
    if config.codebook_per_position:
        raise ValueError("growing a codebook per position is not supported: grow, then split")
    if not config.revive_dead_codes:
        raise ValueError("the new codes would stay dead: this tokenizer has revive_dead_codes off")
    state[CODEBOOK] = torch.cat([old, old[torch.randint(len(old), (added,))]])
    dead = config.dead_after_steps + 1
    state[IDLE] = torch.cat([state[IDLE], torch.full((added,), dead, dtype=state[IDLE].dtype)])
    for key in ("exp_avg", "exp_avg_sq"):
        moments[key] = torch.cat([moments[key], moments[key].new_zeros(added, old.shape[1])])
    model["num_codes"] = num_codes
    return checkpoint


def split_per_position(checkpoint: dict) -> dict:
    state, moments = checkpoint["state_dict"], codebook_moments(checkpoint)
    model = checkpoint["hyper_parameters"]["model"]
    config = TokenizerConfig(**model)
    if config.codebook_per_position:
        raise ValueError("this tokenizer already has a codebook per position")
    positions = config.tokens_per_frame
    state[CODEBOOK] = state[CODEBOOK].repeat(positions, 1)
    state[IDLE] = state[IDLE].repeat(positions)
    for key in ("exp_avg", "exp_avg_sq"):
        moments[key] = moments[key].repeat(positions, 1)
    model["codebook_per_position"] = True
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path)
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--num-codes", type=int, help="grow the codebook to this many codes")
    how.add_argument("--per-position", action="store_true", help="a codebook per position")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    checkpoint = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    if args.per_position:
        torch.save(split_per_position(checkpoint), args.out)
        print(f"{args.out}: one codebook per token position")
    else:
        torch.save(grow(checkpoint, args.num_codes), args.out)
        print(f"{args.out}: {args.num_codes} codes")


if __name__ == "__main__":
    main()
