"""The tokenizer alone, on held-out frames: what the world model's dream can at best draw.

Every frame of the held-out episodes (after the first, drawn in another palette) is encoded
and decoded given the real frames before it (*teacher-forced*; the IRIS tokenizer takes no
frame before and ignores it). A context-aware tokenizer is also *chained*: from a real
start, each frame drawn from its own drawing of the one before, as the dream asks, so that
errors can pile up. Scored with the Pong detector: ball recall within 1 px (also right of
x = 51 px, next to the player's paddle), false balls, ghost balls, paddle error, score.
"""

import numpy as np
import torch

from worldmodel.bundle import AnyTokenizer
from worldmodel.data.episode import Episode
from worldmodel.envs.pong_detector import compare, detect
from worldmodel.eval.fidelity import reconstruct
from worldmodel.frames import to_uint8_frames, windows
from worldmodel.models.delta_tokenizer import DeltaTokenizer, shuffled_token_ratio
from worldmodel.models.quantizer import codebook_stats

PLAYER_SIDE_X = 51.0  # a ball right of this is next to the player's paddle
CHAIN_STEPS = (1, 5, 10, 20, 30)
CHAIN_STARTS = 32


def drawing_scores(real: np.ndarray, drawn: np.ndarray) -> dict[str, float]:
    a, b = detect(real), detect(drawn)
    scores = compare(a, b)
    right = a.ball_present & (a.ball_xy[:, 0] > PLAYER_SIDE_X)
    scores["ball_recall_right_of_51px"] = compare(a[right], b[right])["ball_recall"]
    scores["ghost_ball_frames"] = float((b.ball_blobs > 1).mean())
    error = (drawn.astype(np.float32) - real.astype(np.float32)) / 255
    mse = np.maximum((error**2).reshape(len(real), -1).mean(1), 1e-10)
    scores["psnr_db"] = float((10 * np.log10(1 / mse)).mean())
    return scores


@torch.inference_mode()
def chained(
    tokenizer: DeltaTokenizer,
    episode: Episode,
    starts: np.ndarray,
    steps: int,
    as_predicted: bool = False,
):
    """From the real frames up to s, frames s+1 .. s+steps each drawn from the drawings before
    it (its tokens given them, or with `as_predicted` no tokens at all: the decoder's own
    physics, what the dream leans on between the coded frames) -> (len(starts), steps, h, w,
    3) uint8."""
    device = tokenizer.quantizer.codebook.weight.device
    frames = torch.from_numpy(episode.frames).to(device)
    actions = torch.from_numpy(episode.actions).to(device)
    index = torch.from_numpy(starts).to(device)
    recent, drawn = windows(frames[None], tokenizer.context_frames)[0, index], []
    for h in range(1, steps + 1):
        action = actions[index + h - 1]
        drawn_frame = (
            tokenizer.draw_as_predicted(recent, action).clamp(0, 1)
            if as_predicted
            else tokenizer.round_trip(recent, action, frames[index + h])
        )
        frame = to_uint8_frames(drawn_frame)
        recent = torch.cat([recent[:, 1:], frame[:, None]], 1)
        drawn.append(frame.cpu().numpy())
    return np.stack(drawn, 1)


def tokenizer_scores(tokenizer: AnyTokenizer, episodes: list[Episode]) -> dict:
    previous = np.concatenate(
        [windows(e.frames[None], tokenizer.context_frames)[0, 1:-1] for e in episodes]
    )
    frames = np.concatenate([e.frames[2:] for e in episodes])
    actions = np.concatenate([e.actions[1:-1] for e in episodes])
    drawn = reconstruct(tokenizer, previous, actions, frames)
    results = {"teacher_forced": drawing_scores(frames, drawn), "frames": len(frames)}
    if not isinstance(tokenizer, DeltaTokenizer):
        return results  # (IRIS tokenizers: experiments/tokenizer_report.py has more)
    device = tokenizer.quantizer.codebook.weight.device
    with torch.inference_mode():
        tokens = torch.cat(
            [
                tokenizer.encode(
                    *(
                        torch.from_numpy(x[i : i + 256]).to(device)
                        for x in (previous, actions, frames)
                    )
                )
                for i in range(0, len(frames), 256)
            ]
        )
    codes = tokens[tokens < tokenizer.cfg.num_codes]  # not "as predicted"
    results["codebook_usage"] = float(codebook_stats(codes, tokenizer.cfg.num_codes)["usage"])
    if tokenizer.cfg.as_predicted:
        predicted = tokens[:, 0] == tokenizer.cfg.num_codes
        results["as_predicted_share"] = float(predicted.float().mean())
    sample = torch.from_numpy(np.linspace(0, len(frames) - 1, 256).astype(int))
    results["shuffled_token_ratio"] = shuffled_token_ratio(
        tokenizer, *(torch.from_numpy(x)[sample].to(device) for x in (previous, actions, frames))
    )
    episode = max(episodes, key=len)
    steps = min(max(CHAIN_STEPS), len(episode) - 3)
    if steps >= 1:
        starts = np.linspace(1, len(episode) - steps - 2, CHAIN_STARTS).astype(int)
        kinds = {"chained": False} | (
            {"chained_as_predicted": True} if tokenizer.cfg.as_predicted else {}
        )
        for key, as_predicted in kinds.items():
            chain = chained(tokenizer, episode, starts, steps, as_predicted)
            results[key] = {
                f"h={h}": drawing_scores(
                    np.stack([episode.frames[s + h] for s in starts]), chain[:, h - 1]
                )
                for h in CHAIN_STEPS
                if h <= steps
            }
    return results
