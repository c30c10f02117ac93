"""Where does the world model's probability for the ball token go? Trains nothing.

    python experiments/ball_token_distribution.py BUNDLE [BUNDLE ...] --out DIR

Teacher forced on the held-out tracker episodes (back-to-back segments of the model's
context, as validation cuts them). For every frame whose real ball is in one of the four
middle patches (nothing else is drawn there), it takes the world model's distribution for
that patch's token and decodes each of its most likely codes in the real frame's context
(the frame's own tokens, that one replaced), then sorts the probability by what the code
draws: the ball within 1 px of the real ball, 1-3 px away, further, or no ball. A sampled
dream draws from exactly this: mass far away is a ball that jumps, mass on no ball is a ball
that vanishes. Also: how often the most likely code (greedy) lands in each bucket, and both
by the number of real frames the model had before the predicted one (a segment's second frame
follows one frame: no velocity to go by; a dream has several after its first step).
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from worldmodel.bundle import load_bundle
from worldmodel.data.held_out import held_out_episodes
from worldmodel.envs.pong_detector import detect
from worldmodel.eval.report import markdown_table, write_report
from worldmodel.frames import to_uint8_frames

BUCKETS = ("within 1 px", "1-3 px", "over 3 px", "no ball")


def bucket_of(ball_present: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Index into BUCKETS for each decoded candidate."""
    near = np.digitize(distance, [1.0, 3.0], right=True)  # 0: <= 1, 1: <= 3, 2: further
    return np.where(ball_present, near, 3)


@torch.inference_mode()
def distribution(bundle, episodes, top: int) -> dict:
    tokenizer, world_model = bundle.tokenizer.eval(), bundle.world_model.eval()
    k, length = world_model.cfg.tokens_per_frame, world_model.cfg.max_frames
    width = tokenizer.latent_shape[1]
    middle = {r * width + c for r in (1, 2) for c in (1, 2)}
    # Per context length t (real frames before the predicted one; row 0 stays empty): bucket
    # masses / greedy hits.
    mass = np.zeros((length, len(BUCKETS) + 1))
    greedy = np.zeros((length, len(BUCKETS)))
    p_true = []
    for episode in episodes:
        found = detect(episode.frames)
        tokens = tokenizer.encode(torch.from_numpy(episode.frames))
        actions = torch.from_numpy(episode.actions).long()
        for start in range(0, len(tokens) - length + 1, length):
            sequence = world_model.interleave(
                tokens[None, start : start + length], actions[None, start : start + length]
            )
            probs = world_model(sequence).obs_logits[0].softmax(-1)
            for t in range(1, length):
                frame = start + t
                if not found.ball_present[frame]:
                    continue
                x, y = found.ball_xy[frame]
                cell = int(y // tokenizer.patch) * width + int(x // tokenizer.patch)
                if cell not in middle:
                    continue
                predicted = probs[t * (k + 1) + cell - 1]  # the position before the token
                candidates = predicted.topk(top).indices
                variants = tokens[frame].repeat(top, 1)
                variants[:, cell] = candidates
                drawn = detect(to_uint8_frames(tokenizer.decode(variants)).numpy())
                where = bucket_of(
                    drawn.ball_present, np.hypot(*(drawn.ball_xy - found.ball_xy[frame]).T)
                )
                weights = predicted[candidates].numpy()
                mass[t, : len(BUCKETS)] += np.bincount(where, weights, minlength=len(BUCKETS))
                mass[t, -1] += 1.0 - weights.sum()  # outside the top codes: not decoded
                greedy[t, where[0]] += 1
                p_true.append(float(predicted[tokens[frame, cell]]))
    mass_names = (*BUCKETS, f"outside top {top}")
    tokens_by_t = greedy.sum(1)

    def shares(names: tuple[str, ...], totals: np.ndarray, n: float) -> dict[str, float]:
        """Each bucket's share of n tokens (nan without any)."""
        return dict(zip(names, (totals / n if n else totals * np.nan).tolist(), strict=True))

    return {
        "ball_tokens": len(p_true),
        "mass": shares(mass_names, mass.sum(0), len(p_true)),
        "greedy": shares(BUCKETS, greedy.sum(0), len(p_true)),
        "p_true_token": float(np.mean(p_true)) if p_true else float("nan"),
        "by_context_frames": {
            t: {
                "ball_tokens": int(tokens_by_t[t]),
                "mass": shares(mass_names, mass[t], tokens_by_t[t]),
                "greedy": shares(BUCKETS, greedy[t], tokens_by_t[t]),
            }
            for t in range(1, length)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", type=Path, nargs="+")
    parser.add_argument("--data-dir", default="data/val")
    parser.add_argument("--top", type=int, default=32, help="codes decoded per token")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    bundles = {path: load_bundle(path) for path in args.bundles}
    # The same held-out play for every bundle: read once (bundles of one game share a spec).
    episodes = held_out_episodes(next(iter(bundles.values())).spec, args.data_dir)
    results, rows, context_rows = {}, [], []
    for path, bundle in bundles.items():
        result = results[str(path)] = distribution(bundle, episodes, args.top)
        rows.append(
            [str(path), str(result["ball_tokens"]), f"{result['p_true_token']:.2f}"]
            + [f"{v:.0%}" for v in result["mass"].values()]
            + [f"{v:.0%}" for v in result["greedy"].values()]
        )
        for t, part in result["by_context_frames"].items():
            context_rows.append(
                [str(path), str(t), str(part["ball_tokens"])]
                + [f"{part['greedy'][b]:.0%}" for b in (BUCKETS[0], BUCKETS[2])]
                + [f"{part['mass'][b]:.0%}" for b in (BUCKETS[2], BUCKETS[3])]
            )
    header = ["bundle", "ball tokens", "p(true code)"]
    header += [f"sampled: {b}" for b in (*BUCKETS, f"outside top {args.top}")]
    header += [f"greedy: {b}" for b in BUCKETS]
    context_header = ["bundle", "real frames before", "ball tokens"]
    context_header += ["greedy: within 1 px", "greedy: over 3 px"]
    context_header += ["sampled: over 3 px", "sampled: no ball"]
    write_report(
        args.out,
        "ball_token_distribution",
        "Where the world model's probability for the ball token goes (teacher forced)",
        "python experiments/ball_token_distribution.py " + " ".join(map(str, args.bundles)),
        markdown_table(header, rows)
        + "\n\nBy the number of real frames before the predicted one:\n\n"
        + markdown_table(context_header, context_rows),
        results,
    )


if __name__ == "__main__":
    main()
