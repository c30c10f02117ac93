"""Renumber a tokenizer's codes so that its token ids agree with an older tokenizer's.

    python experiments/align_token_ids.py OLD NEW --out ALIGNED.ckpt

A code's id is only a name: permuting a codebook's rows changes no reconstruction. Further
training renames almost everything, though (a dead code revived onto a common patch takes
that patch over: after 250 steps not one held-out token kept its id), and a world model
trained on OLD's ids then starts from nothing on NEW's (`world_model.init_from=`). This picks,
for each codebook (each token position's, with `codebook_per_position`), the renumbering
that keeps the most held-out tokens' ids (a linear assignment on the counts of (new id,
old id) pairs) and writes the tokenizer checkpoint NEW with its codebook rows, their idle
counts and their Adam moments permuted to match. OLD may be a checkpoint or a bundle.
"""

import argparse

import numpy as np
import torch
from expand_codebook import CODEBOOK, IDLE, codebook_moments
from scipy.optimize import linear_sum_assignment
from token_drift import held_out_tokens

from worldmodel.bundle import load_tokenizer


def renumbering(old: np.ndarray, new: np.ndarray, book: np.ndarray, num_codes: int) -> list:
    """Per book, `order` such that the aligned book's code j is the new book's code order[j]."""
    orders = []
    for b in range(book.max() + 1):
        counts = np.zeros((num_codes, num_codes), np.int64)  # (new id, old id)
        np.add.at(counts, (new[:, book == b].ravel(), old[:, book == b].ravel()), 1)
        new_ids, old_ids = linear_sum_assignment(counts, maximize=True)
        order = np.empty(num_codes, np.int64)
        order[old_ids] = new_ids
        orders.append(order)
    return orders


def permute_codebook(checkpoint: dict, orders: list) -> None:
    n = len(orders[0])
    rows = torch.from_numpy(np.concatenate([b * n + order for b, order in enumerate(orders)]))
    state = checkpoint["state_dict"]
    targets = [(state, CODEBOOK), (state, IDLE)]
    if checkpoint.get("optimizer_states"):
        moments = codebook_moments(checkpoint)
        targets += [(moments, "exp_avg"), (moments, "exp_avg_sq")]
    for holder, key in targets:
        holder[key] = holder[key][rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="tokenizer checkpoint or bundle whose ids to keep")
    parser.add_argument("new", help="tokenizer-stage checkpoint to renumber")
    parser.add_argument("--out", required=True)
    parser.add_argument("--data-dir", default="data/val")
    args = parser.parse_args()
    new = load_tokenizer(args.new)
    old_tokens, new_tokens = held_out_tokens(load_tokenizer(args.old), new, args.data_dir)
    book = new.quantizer.book_of_position(new.cfg.tokens_per_frame).numpy()
    orders = renumbering(old_tokens, new_tokens, book, new.cfg.num_codes)
    checkpoint = torch.load(args.new, map_location="cpu", weights_only=True)
    permute_codebook(checkpoint, orders)
    torch.save(checkpoint, args.out)
    _, aligned = held_out_tokens(new, load_tokenizer(args.out), args.data_dir)
    print(f"{len(old_tokens)} held-out frames: tokens with OLD's id")
    print(f"  before: {(new_tokens == old_tokens).mean():.1%}")
    print(f"  after:  {(aligned == old_tokens).mean():.1%}  ({args.out})")


if __name__ == "__main__":
    main()
