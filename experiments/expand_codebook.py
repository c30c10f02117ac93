"""Grow a trained tokenizer's codebook, to test whether 512 codes are what limits it.

    python experiments/expand_codebook.py CKPT --num-codes 1024 --out NEW.ckpt

Writes a copy of the tokenizer-stage checkpoint CKPT with `--num-codes` codes: the old codes
unchanged, the new ones copies of random old ones (never chosen: the nearest-code search
picks the first of equals) marked dead, so the first training step revives them onto the
batch's worst-served encoder outputs (see `VectorQuantizer.revive_dead_codes_`). Adam's
moments for the new rows start at zero. Resume it like any checkpoint, with the new size:

    python -m worldmodel.train stage=tokenizer ckpt_path=NEW.ckpt \
        tokenizer.module.model.num_codes=N ...
"""

import argparse
from pathlib import Path

import torch

from worldmodel.models.tokenizer import TokenizerConfig

CODEBOOK = "tokenizer.quantizer.codebook.weight"
IDLE = "tokenizer.quantizer.idle_steps"


def expand(checkpoint: dict, num_codes: int) -> dict:
    state = checkpoint["state_dict"]
    old = state[CODEBOOK]
    added = num_codes - len(old)
    if added <= 0:
        raise ValueError(f"the codebook already has {len(old)} codes")
    model = checkpoint["hyper_parameters"]["model"]
    config = TokenizerConfig(**model)
    if not config.revive_dead_codes:
        raise ValueError("the new codes would stay dead: this tokenizer has revive_dead_codes off")
    state[CODEBOOK] = torch.cat([old, old[torch.randint(len(old), (added,))]])
    dead = config.dead_after_steps + 1
    state[IDLE] = torch.cat([state[IDLE], torch.full((added,), dead, dtype=state[IDLE].dtype)])
    moments = [
        s
        for s in checkpoint["optimizer_states"][0]["state"].values()
        if s["exp_avg"].shape == old.shape
    ]
    if len(moments) != 1:
        raise ValueError(
            f"expected one optimizer state shaped like the codebook, found {len(moments)}"
        )
    for key in ("exp_avg", "exp_avg_sq"):
        moments[0][key] = torch.cat(
            [moments[0][key], moments[0][key].new_zeros(added, old.shape[1])]
        )
    model["num_codes"] = num_codes
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--num-codes", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    checkpoint = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    torch.save(expand(checkpoint, args.num_codes), args.out)
    print(f"{args.out}: {args.num_codes} codes")


if __name__ == "__main__":
    main()
