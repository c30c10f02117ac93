"""The context-aware tokenizer's training stage: pairs cut from segments, and one real
`python -m worldmodel.train stage=tokenizer tokenizer=delta` run end to end."""

import csv
import json

import pytest
import torch

from worldmodel.data.held_out import HeldOut, held_out_episodes
from worldmodel.data.segments import Segments
from worldmodel.envs import EnvSpec
from worldmodel.eval.tokenizer import tokenizer_scores
from worldmodel.frames import to_uint8_frames
from worldmodel.lit.checkpoints import load_tokenizer
from worldmodel.lit.delta_tokenizer_module import consecutive_pairs, cut_pairs, own_drawings
from worldmodel.models.delta_tokenizer import DeltaTokenizer, DeltaTokenizerConfig

from .batches import segments
from .cli import run_module

TINY_RUN = [
    "stage=tokenizer",
    "tokenizer=delta",
    "logger=csv",
    "data.num_envs=2",
    "data.warmup_steps=40",
    "data.num_workers=0",
    "data.buffer_steps=4000",
    "+data.held_out.episodes=1",
    "+data.held_out.max_steps=64",
    "tokenizer.module.model.channels=4",
    "tokenizer.module.model.latent_channels=8",
    "tokenizer.module.model.context_channels=4",
    "tokenizer.module.model.num_codes=32",
    "tokenizer.module.model.code_dim=8",
    "tokenizer.module.context_gap=3",
    "tokenizer.module.own_drawing_steps=2",
    "tokenizer.module.own_drawing_probability=0.5",
    "tokenizer.batch_size=8",
    "tokenizer.max_steps=12",
    "trainer.val_check_interval=6",
    "+trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=2",
    "trainer.enable_progress_bar=false",
]


def numbered_segments(mask: list[list[bool]]) -> Segments:
    mask = torch.tensor(mask)
    b, t = mask.shape
    # Frame (i, j) is filled with 10 * i + j, action (i, j) is 100 + 10 * i + j.
    ids = 10 * torch.arange(b)[:, None] + torch.arange(t)[None, :]
    frames = ids[..., None, None, None].expand(b, t, 2, 2, 3).to(torch.uint8)
    return segments(mask, frames=frames, actions=100 + ids)


def test_pairs_take_the_gap_the_segment_allows_and_the_action_before_the_frame():
    batch = numbered_segments([[True] * 4, [True, True, False, False], [True, False, False, False]])
    pairs, rows, starts = cut_pairs(batch, torch.tensor([3, 3, 2]))
    assert rows.tolist() == [0, 1] and starts.tolist() == [0, 0]
    # Segment 0: frame 3 after frame 0; segment 1 ends after frame 1 (gap shrinks to 1);
    # segment 2 has no second frame and is left out.
    assert pairs.previous[:, -1, 0, 0, 0].tolist() == [0, 10]
    assert pairs.frames[:, 0, 0, 0].tolist() == [3, 11]
    assert pairs.actions.tolist() == [102, 110]
    assert pairs.consecutive.tolist() == [False, True]
    steps = consecutive_pairs(batch)
    assert steps.previous[:, -1, 0, 0, 0].tolist() == [0, 1, 2, 10]
    assert steps.frames[:, 0, 0, 0].tolist() == [1, 2, 3, 11]
    assert steps.actions.tolist() == [100, 101, 102, 110]


def test_a_pair_may_start_later_in_the_segment_to_leave_room_for_own_drawings():
    batch = numbered_segments([[True] * 5, [True, True, True, False, False]])
    pairs, rows, starts = cut_pairs(batch, torch.tensor([2, 2]), torch.tensor([2, 2]))
    # Segment 1 has frames 0-2: its start shrinks to 1 and its gap to 1.
    assert starts.tolist() == [2, 1] and rows.tolist() == [0, 1]
    assert pairs.previous[:, -1, 0, 0, 0].tolist() == [2, 11]
    assert pairs.frames[:, 0, 0, 0].tolist() == [4, 12]
    assert pairs.actions.tolist() == [103, 111]


def test_two_context_frames_are_the_two_up_to_the_start_the_first_repeating_at_frame_0():
    batch = numbered_segments([[True] * 5, [True] * 5])
    pairs, _, _ = cut_pairs(batch, torch.tensor([1, 2]), torch.tensor([2, 0]), context=2)
    assert pairs.previous[..., 0, 0, 0].tolist() == [[1, 2], [10, 10]]
    assert pairs.frames[:, 0, 0, 0].tolist() == [3, 12]
    steps = consecutive_pairs(batch[:1], context=2)
    assert steps.previous[..., 0, 0, 0].tolist() == [[0, 0], [0, 1], [1, 2], [2, 3]]


def test_own_drawings_chain_each_drawing_from_the_one_before():
    torch.manual_seed(0)
    tokenizer = DeltaTokenizer(
        DeltaTokenizerConfig(channels=4, latent_channels=8, context_channels=4, num_codes=32)
    ).eval()
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 3, 64, 64, 3), dtype=torch.uint8, generator=g)
    actions = torch.randint(0, 6, (3, 3), generator=g)
    drawn = own_drawings(tokenizer, frames, actions, torch.tensor([0, 1, 2]))[:, -1]
    assert torch.equal(drawn[0], frames[0, 0])  # no chain: the real frame
    one = to_uint8_frames(tokenizer.round_trip(frames[1:, 0], actions[1:, 0], frames[1:, 1]))
    assert torch.equal(drawn[1], one[0])

    def close(a: torch.Tensor, b: torch.Tensor) -> bool:  # up to float rounding
        return bool((a.int() - b.int()).abs().max() <= 1)

    two = to_uint8_frames(tokenizer.round_trip(one[1:], actions[2:, 1], frames[2:, 2]))
    from_real = to_uint8_frames(tokenizer.round_trip(frames[2:, 1], actions[2:, 1], frames[2:, 2]))
    assert close(drawn[2], two[0]) and not close(drawn[2], from_real[0])


def test_with_two_context_frames_own_drawings_slide_along_the_chain():
    torch.manual_seed(0)
    cfg = DeltaTokenizerConfig(
        channels=4, latent_channels=8, context_channels=4, num_codes=32, context_frames=2
    )
    tokenizer = DeltaTokenizer(cfg).eval()
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 4, 64, 64, 3), dtype=torch.uint8, generator=g)
    actions = torch.randint(0, 6, (2, 4), generator=g)
    context = own_drawings(tokenizer, frames, actions, torch.tensor([0, 1]))
    assert torch.equal(context[0], frames[0, :2])  # no chain: the first two real frames
    drawn = to_uint8_frames(tokenizer.round_trip(frames[1:, :2], actions[1:, 1], frames[1:, 2]))
    assert torch.equal(context[1, 0], frames[1, 1]) and torch.equal(context[1, 1], drawn[0])


AS_PREDICTED = [
    "tokenizer.module.model.ball_slot=false",
    "tokenizer.module.model.score_slot=false",
    "tokenizer.module.model.context_frames=2",
    "tokenizer.module.model.predicted_tolerance=0.3",
]


@pytest.mark.parametrize("design", ["one_frame", "as_predicted"])
def test_the_delta_tokenizer_stage_trains_and_logs_whether_its_tokens_are_used(tmp_path, design):
    result = run_module(
        "worldmodel.train",
        *TINY_RUN,
        *(AS_PREDICTED if design == "as_predicted" else []),
        f"hydra.run.dir={tmp_path}",
        f"paths.data_dir={tmp_path / 'data'}",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "tokenizer" / "checkpoints" / "last.ckpt").exists()
    rows = list(csv.DictReader((tmp_path / "tokenizer" / "version_0" / "metrics.csv").open()))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {"val/shuffled_token_ratio", "val/codebook_usage", "train/worst_pixel"} <= logged
    if design == "as_predicted":
        assert {"val/as_predicted_share", "train/predicted_worst_pixel"} <= logged
    assert json.loads((tmp_path / "tokenizer" / "train_info.json").read_text())["global_step"] == 12
    # The eval's tokenizer section scores it on the run's held-out episodes.
    tokenizer = load_tokenizer(tmp_path / "tokenizer" / "checkpoints" / "last.ckpt")
    episodes = held_out_episodes(EnvSpec(), tmp_path / "data" / "val", HeldOut(1, 64))
    scores = tokenizer_scores(tokenizer, episodes)
    assert {"ball_recall", "ghost_ball_frames", "psnr_db"} <= set(scores["teacher_forced"])
    assert 0 <= scores["codebook_usage"] <= 1 and scores["shuffled_token_ratio"] > 0
    assert set(scores["chained"]) == {"h=1", "h=5", "h=10", "h=20", "h=30"}
    if design == "as_predicted":  # also chained with no tokens at all
        assert set(scores["chained_as_predicted"]) == set(scores["chained"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stage=all", "different designs"),  # a Delta tokenizer, the IRIS world model
        ("tokenizer.module.model.num_actions=4", "6 actions"),
        ("tokenizer.module.own_drawing_probability=2", "own_drawing_probability"),
        ("tokenizer.module.own_drawing_steps=-1", "own_drawing_steps"),
        ("tokenizer.module.model.context_frames=0", "context_frames"),
        ("tokenizer.module.model.predicted_tolerance=1.5", "predicted_tolerance"),
    ],
)
def test_delta_settings_that_cannot_work_are_one_line_before_any_work(tmp_path, override, message):
    args = [a for a in TINY_RUN if not a.startswith("stage=")]
    stage = [] if override.startswith("stage=") else ["stage=tokenizer"]
    result = run_module(
        "worldmodel.train", *args, *stage, override, f"hydra.run.dir={tmp_path}", timeout=120
    )
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "tokenizer").exists()
