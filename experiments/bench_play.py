"""Speed of the play loop: frames per second of generate + decode, no drawing.

    python experiments/bench_play.py [BUNDLE] [--threads 2] [--out experiments/reports]

Measured in one run, so the ratios hold on a noisy machine:
  cached     the engine as `make play` runs it (KV cache; forwards and the frame decoder
             torch.compile'd; IRIS bundles: the speculative schedule, the last frame's
             tokens checked as a guess in one forward), batch 1, random actions
  sequential (IRIS) the same, one forward per token (17 per frame)
  eager      the cached engine without torch.compile
  baseline   a plain generate(): no cache, the whole context re-run for every token
  batch16/64 the compiled engine with 16 / 64 games at once (frames/s over all games):
             what training a policy in imagination would get
and the multiply-adds a frame costs (matrix products and convolutions), with the compute rate
they make at batch 64: what bounds imagination once the per-call overheads are shared.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

from worldmodel.bundle import load_bundle
from worldmodel.engine import LearnedGame
from worldmodel.eval.report import markdown_table, write_report
from worldmodel.frames import to_uint8_frames

# A context-aware step feeds its forward inputs of three widths (the first step after reset
# two of them), an IRIS step one or two: three steps compile them all before the clock runs.
WARM_UP_STEPS = 3


def start_frames(bundle, batch: int) -> torch.Tensor:
    from worldmodel.envs.atari import AtariBatch

    envs = AtariBatch(bundle.spec, num_envs=1, seed=0)
    frame = torch.from_numpy(envs.reset())
    envs.close()
    return frame.expand(batch, -1, -1, -1).contiguous()


def fps_cached(
    bundle, batch: int, steps: int, compile: bool = True, speculative: bool | None = None
) -> tuple[float, float]:
    """-> (frames/s, world-model forwards per frame)."""
    game = LearnedGame(
        bundle.tokenizer, bundle.world_model, seed=0, compile=compile, speculative=speculative
    )
    game.reset(start_frames(bundle, batch))
    generator = torch.Generator().manual_seed(0)
    actions = torch.randint(
        0, bundle.world_model.cfg.num_actions, (steps + WARM_UP_STEPS, batch), generator=generator
    )
    for step_actions in actions[:WARM_UP_STEPS]:  # compile every input shape a step feeds
        game.step(step_actions)
    forwards, start = game.forwards, time.perf_counter()
    for step_actions in actions[WARM_UP_STEPS:]:
        game.step(step_actions)
    seconds = time.perf_counter() - start
    return batch * steps / seconds, (game.forwards - forwards) / steps


@torch.inference_mode()
def sample(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]


def fps_baseline(bundle, steps: int) -> float:
    """No KV cache: every new token re-reads the whole context (last max_frames) from scratch.
    No-op actions: a forward costs the same whatever the actions."""
    if bundle.kind == "delta":
        return fps_baseline_delta(bundle, steps)
    wm, tok = bundle.world_model, bundle.tokenizer
    generator = torch.Generator().manual_seed(0)
    frames = [tok.encode(start_frames(bundle, 1))]  # (1, K) each
    start = time.perf_counter()
    for _ in range(steps):
        context = torch.stack(frames[-(wm.cfg.max_frames - 1) :], dim=1)  # (1, n, K)
        noop = torch.zeros(context.shape[:2], dtype=torch.long)
        prefix = wm.interleave(context, noop)  # ends with the action token
        new: list[torch.Tensor] = []
        for _ in range(wm.cfg.tokens_per_frame):
            logits = wm(torch.cat([prefix, *new], dim=1)).obs_logits[:, -1]
            new.append(sample(logits, generator)[:, None])
        frames.append(torch.cat(new, dim=1))
        to_uint8_frames(tok.decode(frames[-1]))
    return steps / (time.perf_counter() - start)


def fps_baseline_delta(bundle, steps: int) -> float:
    """fps_baseline for a context-aware bundle: the blocks of the last max_frames steps
    re-read for every token, the frame drawn from the ones before and embedded."""
    wm, tok = bundle.world_model, bundle.tokenizer
    generator = torch.Generator().manual_seed(0)
    frame = start_frames(bundle, 1)
    recent = frame[:, None].expand(-1, tok.context_frames, -1, -1, -1)
    embeddings, tokens = [wm.embed_frames(frame)], []  # (1, D), (1, K) each
    noop, k = torch.zeros(1, dtype=torch.long), wm.cfg.tokens_per_frame
    start = time.perf_counter()
    for _ in range(steps):
        n = min(len(embeddings), wm.cfg.max_frames)
        new = torch.zeros(1, k, dtype=torch.long)
        # The new tokens refer to the frame before's, known already.
        refs = wm.block_references(torch.stack([*tokens[len(tokens) - n + 1 :], new], 1))
        for j in range(k):
            window = torch.stack([*tokens[len(tokens) - n + 1 :], new], 1)
            blocks = wm.sequence(torch.stack(embeddings[-n:], 1), noop.expand(1, n), window, refs)
            # The last block up to its action and the tokens so far (the rest is unread).
            h = wm.transformer(blocks[:, : blocks.shape[1] - k + j])
            if j == 0:
                at_action = h[:, -1]  # who scored is read off the action (the score head)
            ref = None if refs is None else refs[:, -1, j]
            new[:, j] = sample(wm.token_logits(h[:, -1], ref), generator)
        tokens.append(new)
        scored = None if wm.score_head is None else wm.score_head(at_action).argmax(-1)
        drawn_from = tok.with_score(scored, new)
        frame = to_uint8_frames(tok.decode(recent, noop, drawn_from))
        recent = torch.cat([recent[:, 1:], frame[:, None]], 1)
        embeddings.append(wm.embed_frames(frame))
    return steps / (time.perf_counter() - start)


def multiply_adds_per_frame(bundle) -> float:
    """The multiply-adds of one step of one game, as a batch steps it (no speculation)."""
    from torch.utils.flop_counter import FlopCounterMode

    game = LearnedGame(bundle.tokenizer, bundle.world_model, seed=0, speculative=False)
    game.reset(start_frames(bundle, 1))
    game.step(torch.zeros(1, dtype=torch.long))  # a step after the first: cache in use
    with FlopCounterMode(display=False) as counter:
        game.step(torch.zeros(1, dtype=torch.long))
    return counter.get_total_flops() / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", default="models/pong_tiny.bundle.ckpt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("experiments/reports"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.bundle)
    measures = {
        "fps_cached": lambda: fps_cached(bundle, 1, args.steps),
        "fps_eager": lambda: fps_cached(bundle, 1, args.steps, compile=False),
        "fps_baseline": lambda: (
            fps_baseline(bundle, max(10, args.steps // 4)),
            float(bundle.world_model.cfg.tokens_per_frame),  # each over the whole context
        ),
        "fps_batch16": lambda: fps_cached(bundle, 16, max(10, args.steps // 3)),
        "fps_batch64": lambda: fps_cached(bundle, 64, max(5, args.steps // 6)),
    }
    if bundle.kind == "iris":  # a context-aware game has one schedule: the cached one
        measures["fps_sequential"] = lambda: fps_cached(bundle, 1, args.steps, speculative=False)
    # Interleaved rounds, median of each: a noisy neighbour hits every loop alike.
    runs: dict[str, list[float]] = {name: [] for name in measures}
    forwards: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, measure in measures.items():
            fps, forwards[name] = measure()
            runs[name].append(fps)
    results: dict = {name: statistics.median(values) for name, values in runs.items()}
    results["runs"] = runs
    results["forwards_per_frame"] = forwards  # the last round's
    results["ratio"] = results["fps_cached"] / results["fps_baseline"]
    results["threads"] = args.threads
    results["multiply_adds_per_frame"] = macs = multiply_adds_per_frame(bundle)
    labels = {
        "fps_cached": "engine: KV cache, speculative, torch.compile, batch 1",
        "fps_sequential": "engine, sequential (one forward per token), batch 1",
        "fps_eager": "engine without torch.compile, batch 1",
        "fps_baseline": "baseline: no cache (full context per token), batch 1",
        "fps_batch16": "engine, batch 16 (frames/s over all games)",
        "fps_batch64": "engine, batch 64 (frames/s over all games)",
    }
    rows = [
        [label, f"{results[name]:.1f}", f"{forwards[name]:.1f}"]
        for name, label in labels.items()
        if name in results
    ]
    rows.append(["cached / baseline", f"{results['ratio']:.1f}x", ""])
    if "fps_sequential" in results:
        speculative = results["fps_cached"] / results["fps_sequential"]
        rows.append(["speculative / sequential", f"{speculative:.2f}x", ""])
    rows.append(["compiled / eager", f"{results['fps_cached'] / results['fps_eager']:.2f}x", ""])
    rows.append(
        ["multiply-adds a frame (matrix products, convolutions)", f"{macs / 1e6:.0f} M", ""]
    )
    gflops = 2 * macs * results["fps_batch64"] / 1e9
    rows.append(["compute rate at batch 64", f"{gflops:.0f} GFLOP/s", ""])
    write_report(
        args.out,
        "bench_play",
        f"Play-loop speed (generate + decode, no drawing), {args.threads} CPU threads, "
        f"median of {args.repeats} interleaved rounds",
        f"python experiments/bench_play.py {args.bundle} --threads {args.threads} "
        f"--steps {args.steps} --repeats {args.repeats}",
        markdown_table(["loop", "frames/s", "forwards/frame"], rows),
        results,
    )


if __name__ == "__main__":
    main()
