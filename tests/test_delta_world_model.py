"""The world model over context-aware tokens: its block layout, cached == uncached, and a
few steps of training lower its loss."""

import pytest
import torch

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
        sequence = model.blocks(**data)
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
