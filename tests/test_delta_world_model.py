"""The world model over context-aware tokens: its block layout, cached == uncached, a few
steps of training lower its loss, and the ball's motion makes a flight a copy."""

import pytest
import torch

from worldmodel.models.ball_motion import (
    ABSENT,
    APPEARS,
    CLASSES,
    FAR,
    GONE,
    MAX_STEP,
    NULL_CLASS,
    NULL_REFERENCE,
    BallMotion,
)
from worldmodel.models.ball_slot import COLUMNS, ROWS
from worldmodel.models.delta_world_model import BlockLayout, DeltaWorldModel, DeltaWorldModelConfig

TINY = dict(num_codes=32, max_frames=4, n_layers=2, n_heads=2, d_model=32, frame_channels=4)


def batch(b: int = 2, t: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "frames": torch.randint(0, 256, (b, t, 64, 64, 3), dtype=torch.uint8, generator=g),
        "actions": torch.randint(0, 6, (b, t), generator=g),
        "tokens": torch.randint(0, 32, (b, t, 4), generator=g),
    }


def test_the_block_layout_is_frame_action_then_the_next_frames_tokens():
    layout = BlockLayout(4)
    assert layout.length == 6 and layout.first_token == 2
    assert list(range(6))[layout.predicts_token()] == [1, 2, 3, 4]  # action, tokens 1-3


def test_predictions_have_one_row_per_step_and_token():
    model = DeltaWorldModel(DeltaWorldModelConfig(**TINY))
    out = model(**batch())
    assert out.hidden.shape == (2, 24, 32)
    assert out.token_logits.shape == (2, 4, 4, 32)
    assert out.reward_logits.shape == (2, 4, 3) and out.end_logits.shape == (2, 4, 2)


def test_cached_generation_matches_the_whole_sequence():
    torch.manual_seed(0)
    model = DeltaWorldModel(DeltaWorldModelConfig(**TINY)).eval()
    data = batch()
    with torch.no_grad():
        embeddings = model.embed_frames(data["frames"])
        refs = model.block_references(data["tokens"])  # None: no ball motion here
        sequence = model.sequence(embeddings, data["actions"], data["tokens"], refs)
        whole = model.transformer(sequence)
        cache = model.new_cache(2, torch.device("cpu"))
        pieces = []
        for start in range(0, sequence.shape[1], 5):  # uneven pieces across blocks
            x = sequence[:, start : start + 5]
            h, new_kv = model.extend(x, cache.position, cache.kv)
            cache.append(new_kv)
            pieces.append(h)
    assert torch.allclose(torch.cat(pieces, 1), whole, atol=1e-5)


def test_a_frame_is_seen_only_by_what_comes_after_it():
    model = DeltaWorldModel(DeltaWorldModelConfig(**TINY)).eval()
    a, b = batch(), batch()
    b["frames"][:, 2] = 0  # another third frame
    with torch.no_grad():
        ha, hb = model(**a).hidden, model(**b).hidden
    assert torch.equal(ha[:, :12], hb[:, :12])  # the first two blocks cannot see it
    assert not torch.allclose(ha[:, 12:], hb[:, 12:])


def test_a_few_steps_lower_the_loss_and_padding_is_ignored():
    torch.manual_seed(0)
    model = DeltaWorldModel(DeltaWorldModelConfig(**TINY))
    data = batch()
    steps = torch.ones(2, 4, dtype=torch.bool)
    steps[1, 3:] = False  # game 1 ends at its step 2: no frame after it, no step 3
    next_frames = steps.clone()
    next_frames[1, 2] = False
    rewards = torch.zeros(2, 4)
    rewards[1, 2] = -1  # the last step of an episode carries its end and its point
    ends = torch.zeros(2, 4, dtype=torch.bool)
    ends[1, 2] = True
    targets = {"rewards": rewards, "ends": ends, "steps": steps, "next_frames": next_frames}
    optimizer = torch.optim.AdamW(model.optimizer_groups(0.01), lr=3e-3)
    losses = []
    for _ in range(30):
        terms, _ = model.loss(**data, **targets)
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        out = model(**data)
    assert out.end_logits[1, 2].argmax() == 1 and out.reward_logits[1, 2].argmax() == 0
    padded = {k: v.clone() for k, v in data.items()}
    padded["tokens"][1, 2:] = 7  # tokens past the episode's last frame change nothing
    with torch.no_grad():
        same = model.loss(**data, **targets)[0]["tokens"]
        assert torch.allclose(same, model.loss(**padded, **targets)[0]["tokens"])


def test_a_context_of_one_frame_is_refused():
    with pytest.raises(ValueError, match="max_frames"):
        DeltaWorldModelConfig(max_frames=1)


# The ball's motion: a tiny vocabulary of 8 codes, then the ball slot's columns and rows.
BALL_IDS = (8, 8 + COLUMNS + 1)
MOTION = {**TINY, "num_codes": BALL_IDS[1] + ROWS + 1, "tokens_per_frame": 3}


def flights(b: int, t: int, seed: int = 0) -> torch.Tensor:
    """Frames' tokens (B, T, 3) of balls that fly at constant velocity from random places:
    column, row, one code."""
    g = torch.Generator().manual_seed(seed)
    start = torch.stack(
        [torch.randint(20, 140, (b,), generator=g), torch.randint(40, 170, (b,), generator=g)], 1
    )
    velocity = torch.randint(-2, 3, (b, 2), generator=g) * 4
    path = start[:, None] + velocity[:, None] * torch.arange(t)[None, :, None]
    code = torch.randint(0, 8, (b, t, 1), generator=g)
    return torch.cat([path + torch.tensor(BALL_IDS), code], -1)


def test_ball_tokens_refer_to_the_frame_before_and_move_by_displacement_classes():
    motion = BallMotion(BALL_IDS, MOTION["num_codes"], 16)
    before = torch.tensor([[BALL_IDS[0] + 50, BALL_IDS[1] + 100, 3], [0, 0, 0]])
    refs = motion.references(before)
    assert refs[0].tolist() == [50, COLUMNS + 1 + 100, NULL_REFERENCE]
    assert (refs[1] == NULL_REFERENCE).all()  # zeros: no ball tokens, unknown
    table = motion.table
    assert table[50, BALL_IDS[0] + 54] == MAX_STEP + 4  # four columns to the right
    assert table[COLUMNS + 1 + 100, BALL_IDS[1] + 92] == CLASSES + MAX_STEP - 8  # rows: after
    assert table[50, BALL_IDS[0] + 90] == FAR and table[50, BALL_IDS[0] + COLUMNS] == GONE
    assert (
        table[COLUMNS, BALL_IDS[0] + 7] == APPEARS
        and table[COLUMNS, BALL_IDS[0] + COLUMNS] == ABSENT
    )
    assert (table[50, : BALL_IDS[0]] == NULL_CLASS).all()  # codes have no motion
    assert (table[50, BALL_IDS[1] :] == NULL_CLASS).all()  # nor rows given a column's
    assert (table[NULL_REFERENCE] == NULL_CLASS).all()
    hidden = torch.randn(2, 3, 16)
    assert motion.logits(hidden, refs)[1].eq(0).all()  # no reference: nothing added
    assert motion.input_embedding(before, refs)[1].eq(0).all()


def test_with_ball_motion_a_flight_is_learned_as_a_copy_of_the_step_before():
    """Constant-velocity flights from random places, 200 steps: with the motion the model
    continues them wherever they are (with absolute ids alone, 2% of the balls after as many
    steps). A frame's tokens have a velocity before them from the third block on."""
    frames = torch.zeros(16, 4, 16, 16, 3, dtype=torch.uint8)  # the frames say nothing
    actions = torch.zeros(16, 4, dtype=torch.long)
    mask = torch.ones(16, 4, dtype=torch.bool)
    targets = {"rewards": torch.zeros(16, 4), "ends": ~mask, "steps": mask, "next_frames": mask}
    torch.manual_seed(0)
    cfg = DeltaWorldModelConfig(**MOTION, resolution=16, ball_ids=BALL_IDS, ball_motion=True)
    model = DeltaWorldModel(cfg)
    optimizer = torch.optim.AdamW(model.optimizer_groups(0.01), lr=3e-3)
    for step in range(200):
        terms, _ = model.loss(frames, actions, flights(16, 4, seed=step), **targets)
        optimizer.zero_grad()
        terms["tokens"].backward()
        optimizer.step()
    held_out = flights(16, 4, seed=1000)
    with torch.no_grad():
        predicted = model(frames, actions, held_out).token_logits[:, 2:, :2].argmax(-1)
    assert (predicted == held_out[:, 2:, :2]).float().mean() > 0.9


def test_ball_motion_without_the_ball_slot_is_refused():
    with pytest.raises(ValueError, match="ball slot"):
        DeltaWorldModelConfig(**TINY, ball_motion=True)


def test_ball_references_are_contiguous_whatever_the_tokens_before_are():
    # The engine passes a view into its growing token history: references that kept its
    # strides would change them every step, and torch.compile would recompile every step.
    history = torch.zeros(1, 5, 3, dtype=torch.long)
    refs = BallMotion(BALL_IDS, MOTION["num_codes"], 8).references(history[:, -1])
    assert refs.is_contiguous() and refs.stride() == (3, 1)
