"""What do a context-aware bundle's tokens say about the ball, and what does its world model
see of it? Trains nothing.

    python experiments/delta_token_probe.py [BUNDLE_OR_TOKENIZER_CKPT] [--steps 400] [--out DIR]

A tokenizer stage's checkpoint (runs/NAME/tokenizer/checkpoints/last.ckpt) is probed on Pong
at its resolution, without the frame-embedding section (it has no world model).

On tracker play (4 envs, fixed seed), for every triple of frames f0, f1, f2 with the ball in
flight mid-field at a constant velocity:

* absolute or relative: f2's tokens (encoded given f1) drawn from f0 instead. Tokens that
  say "the ball moved by v" draw it at f0 + v (= f1's position); tokens that say "the ball
  is here" draw it where f2 has it. Relative tokens repeat along a flight, which a world
  model predicts by copying; absolute ones are one class per place.
* code geometry: the token of the ball's quadrant swapped for its n-th nearest code (cosine)
  or a random one: how far the drawn ball moves. Small moves for near codes mean a world
  model's near miss is a small error, not a jump.
* frame embedding (a bundle): a ridge probe of the ball's position from the world model's
  embedding of the frame (what the GPT reads of the frame it is about to continue).
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from worldmodel.bundle import FORMAT, load_bundle, read_checkpoint
from worldmodel.envs.atari import AtariBatch, EnvSpec
from worldmodel.envs.policies import TrackerPolicy
from worldmodel.envs.pong_detector import detect
from worldmodel.envs.pong_screen import geometry
from worldmodel.eval.report import markdown_table, write_report
from worldmodel.frames import to_uint8_frames
from worldmodel.lit.checkpoints import load_tokenizer
from worldmodel.models.delta_tokenizer import DeltaTokenizer


def tracker_play(
    spec: EnvSpec, steps: int, envs: int = 4, seed: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """-> frames (envs, steps + 1, H, W, 3) uint8, actions (envs, steps)."""
    batch = AtariBatch(spec, num_envs=envs, seed=seed)
    policy = TrackerPolicy(batch.action_meanings, envs, seed=seed)
    frames, actions = [batch.reset().copy()], []
    for _ in range(steps):
        actions.append(policy.act(batch.frames, batch.ram))
        frames.append(batch.step(actions[-1])[0].copy())
    batch.close()
    return np.stack(frames, 1), np.stack(actions, 1)


def ball_error(drawn: torch.Tensor, *targets_xy: np.ndarray) -> tuple[np.ndarray, ...]:
    """-> (ball found, then per target its max-axis distance in px) per drawn frame."""
    found = detect(to_uint8_frames(drawn).numpy())
    return found.ball_present, *(np.abs(found.ball_xy - t).max(1) for t in targets_xy)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", default="models/pong_tiny.bundle.ckpt")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("experiments/reports"))
    args = parser.parse_args()
    if read_checkpoint(args.bundle).get("format") == FORMAT:
        bundle = load_bundle(args.bundle)
        tokenizer, world_model, spec = bundle.tokenizer, bundle.world_model, bundle.spec
    else:  # a tokenizer stage's checkpoint
        tokenizer, world_model = load_tokenizer(args.bundle), None
        spec = EnvSpec(frame_size=tokenizer.cfg.resolution)
    if not isinstance(tokenizer, DeltaTokenizer):
        raise SystemExit(f"{args.bundle} holds IRIS tokens; this probe is for context-aware ones")
    if tokenizer.cfg.context_frames != 1:
        raise SystemExit(
            f"{args.bundle} reads {tokenizer.cfg.context_frames} frames before; this probe asks "
            "one-frame tokens about the ball (the eval's tokenizer section has the rest)"
        )
    frames, actions = tracker_play(spec, args.steps)
    envs, length, image = frames.shape[0], frames.shape[1], frames.shape[2:]
    every = frames.reshape(-1, *image)
    seen = detect(every)  # once; the triples index into it
    starts = (np.arange(envs)[:, None] * length + np.arange(length - 2)).reshape(-1)
    f0, f1, f2 = (every[starts + i] for i in range(3))
    d0, d1, d2 = (seen[starts + i] for i in range(3))
    a1 = actions[:, 1:].reshape(-1)
    v1, v2 = d1.ball_xy - d0.ball_xy, d2.ball_xy - d1.ball_xy
    flying = d0.ball_present & d1.ball_present & d2.ball_present
    flying &= (np.abs(v1 - v2).max(1) < 0.6) & (np.abs(v2).max(1) > 0.8)
    bands = geometry(*image[:2]).band_cols  # clear of both paddles by a ball's move or two
    x = d1.ball_xy[:, 0]
    flying &= (x > bands["opponent"].max() + 4) & (x < bands["player"].min() - 4)
    keep = np.nonzero(flying)[0]
    previous, before, frame = (torch.from_numpy(f[keep]) for f in (f1, f0, f2))
    act = torch.from_numpy(a1[keep]).long()
    where, moved_by_v = d2.ball_xy[keep], d1.ball_xy[keep]
    tokens = tokenizer.encode(previous, act, frame)

    rows, results = [], {"triples": len(keep)}
    found, to_own = ball_error(tokenizer.decode(previous, act, tokens), where)
    rows.append(["own context (f1)", f"{found.mean():.3f}", f"{np.median(to_own[found]):.2f}", ""])
    found, to_abs, to_rel = ball_error(tokenizer.decode(before, act, tokens), where, moved_by_v)
    absolute = float((to_abs < to_rel)[found].mean())
    results |= {
        "absolute_fraction": absolute,
        "to_absolute_px": float(to_abs[found].mean()),
        "to_relative_px": float(to_rel[found].mean()),
    }
    rows.append(
        [
            "context one step older (f0): drawn where f2 has it / at f0 + v",
            f"{found.mean():.3f}",
            f"{to_abs[found].mean():.2f} / {to_rel[found].mean():.2f}",
            f"absolute in {absolute:.0%}",
        ]
    )

    grid = tokenizer.cfg.token_grid  # tokens cover a grid of regions, row by row
    cell = (where // (tokenizer.cfg.resolution // grid)).astype(int).clip(0, grid - 1)
    # (the codes come after the slots' tokens: the score change, the ball's two)
    first_code = tokenizer.cfg.frame_tokens - tokenizer.cfg.tokens_per_frame
    quadrant = torch.from_numpy(cell[:, 1] * grid + cell[:, 0]) + first_code
    codes = tokenizer.quantizer.codes()
    similarity = (codes @ codes.T).fill_diagonal_(-2.0)
    ball_token = tokens[torch.arange(len(keep)), quadrant]
    generator = torch.Generator().manual_seed(0)
    swaps = {f"{n}": similarity[ball_token].topk(n, dim=1).indices[:, n - 1] for n in (1, 5, 50)}
    swaps["random"] = torch.randint(0, codes.shape[0], (len(keep),), generator=generator)
    for name, replacement in swaps.items():
        swapped = tokens.clone()
        swapped[torch.arange(len(keep)), quadrant] = replacement
        found, moved = ball_error(tokenizer.decode(previous, act, swapped), where)
        label = "a random code" if name == "random" else f"its nearest code no. {name}"
        within = float((moved[found] <= 2).mean())
        results[f"swap_{name}"] = {"found": float(found.mean()), "within_2px": within}
        rows.append(
            [
                f"ball quadrant's token swapped for {label}",
                f"{found.mean():.3f}",
                f"{np.median(moved[found]):.2f}",
                f"within 2 px: {within:.0%}",
            ]
        )

    if world_model is not None:
        rows.append(embedding_probe(world_model, every, seen, length, results))
    write_report(
        args.out,
        "delta_token_probe",
        f"What the tokens and the frame embedding say about the ball ({len(keep)} mid-field "
        "flight triples)",
        f"python experiments/delta_token_probe.py {args.bundle} --steps {args.steps}",
        markdown_table(["probe", "ball found", "ball error (px)", ""], rows),
        results,
    )


def embedding_probe(world_model, every: np.ndarray, seen, length: int, results: dict) -> list:
    """A ridge probe of the ball from the world model's frame embedding: a report row."""
    # Each env's first frame is drawn in another palette, before the game starts.
    later = (np.arange(len(every)) % length) > 0
    with_ball = np.nonzero(seen.ball_present & later)[0]
    x = world_model.embed_frames(torch.from_numpy(every[with_ball])).numpy()
    x, y = np.concatenate([x, np.ones((len(x), 1))], 1), seen.ball_xy[with_ball]
    fit = len(x) * 3 // 4
    weights = np.linalg.solve(x[:fit].T @ x[:fit] + np.eye(x.shape[1]), x[:fit].T @ y[:fit])
    probe = np.abs(x[fit:] @ weights - y[fit:]).mean(0)
    results["embedding_probe_px"] = probe.tolist()
    return [
        "ball from the world model's frame embedding (ridge probe, held-out quarter): x / y",
        "",
        f"{probe[0]:.2f} / {probe[1]:.2f}",
        f"{len(with_ball)} frames",
    ]


if __name__ == "__main__":
    main()
