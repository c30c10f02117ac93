"""The context-aware tokenizer: its token layout, the straight-through gradient, and that
its decoder draws from the previous frame and from the tokens."""

import numpy as np
import pytest
import torch

from worldmodel.frames import to_uint8_frames, windows
from worldmodel.models.delta_tokenizer import (
    DeltaTokenizer,
    DeltaTokenizerConfig,
    shuffled_token_ratio,
)

TINY = dict(channels=8, latent_channels=16, context_channels=4, num_codes=32, code_dim=8)


def frames(n: int, seed: int) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("residual", [False, True])
def test_tokens_and_frames_have_the_designed_shapes(residual):
    model = DeltaTokenizer(DeltaTokenizerConfig(**TINY, residual=residual)).eval()
    previous, frame, actions = frames(3, 0), frames(3, 1), torch.tensor([0, 2, 5])
    tokens = model.encode(previous, actions, frame)
    assert tokens.shape == (3, 4) and tokens.dtype == torch.long
    drawn = model.decode(previous, actions, tokens)
    assert drawn.shape == (3, 3, 64, 64) and drawn.min() >= 0 and drawn.max() <= 1


def test_regions_round_trip_in_token_order():
    model = DeltaTokenizer(DeltaTokenizerConfig(**TINY, tokens_per_frame=16))
    z = torch.randn(2, 16, 8, 8)
    regions = model._to_regions(z)
    assert regions.shape == (2, 16, 16 * 2 * 2)
    assert torch.equal(model._from_regions(regions), z)
    # Token 1 is the second region of the first row: latent columns 2-3 of rows 0-1.
    assert torch.equal(regions[0, 1].view(16, 2, 2), z[0, :, 0:2, 2:4])


def test_the_gradient_reaches_the_encoder_through_the_codebook():
    model = DeltaTokenizer(DeltaTokenizerConfig(**TINY))
    out = model(frames(4, 0), torch.tensor([1, 2, 3, 4]), frames(4, 1))
    out.reconstruction.mean().backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0  # straight through the quantizer
    assert model.context[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("residual", [False, True])
def test_the_decoder_draws_from_the_previous_frame_and_the_action(residual):
    model = DeltaTokenizer(DeltaTokenizerConfig(**TINY, residual=residual)).eval()
    if residual:  # start from a trained-looking change, not the all-zero initial one
        torch.nn.init.normal_(model.decoder.net[-1].weight, std=0.1)
    tokens = torch.zeros(2, 4, dtype=torch.long)
    actions = torch.tensor([0, 0])
    a = model.decode(frames(2, 0), actions, tokens)
    b = model.decode(frames(2, 1), actions, tokens)
    assert (a - b).abs().max() > 1e-3  # another previous frame draws another frame
    c = model.decode(frames(2, 0), torch.tensor([3, 3]), tokens)
    assert (a - c).abs().max() > 1e-4  # so does another action


def test_an_untrained_residual_tokenizer_copies_the_previous_frame():
    model = DeltaTokenizer(DeltaTokenizerConfig(**TINY, residual=True)).eval()
    previous = frames(2, 0)
    drawn = model.decode(previous, torch.tensor([1, 1]), torch.zeros(2, 4, dtype=torch.long))
    assert torch.allclose(drawn, previous.permute(0, 3, 1, 2).float() / 255)


def test_the_shuffled_token_ratio_tells_used_tokens_from_ignored_ones():
    torch.manual_seed(0)
    model = DeltaTokenizer(DeltaTokenizerConfig(**TINY, residual=True)).eval()
    previous, frame, actions = frames(4, 0), frames(4, 1), torch.zeros(4, dtype=torch.long)
    # Untrained residual decoder: a zero change whatever the tokens say.
    assert shuffled_token_ratio(model, previous, actions, frame) == pytest.approx(1.0)
    torch.nn.init.normal_(model.decoder.net[-1].weight, std=0.1)
    torch.nn.init.normal_(model.quantizer.codebook.weight)
    torch.nn.init.normal_(model.pre_quant.weight)  # frames far apart get other codes
    torch.nn.init.normal_(model.post_quant.weight)  # which draw other changes
    assert len(model.encode(previous, actions, frame).unique()) > 1
    assert shuffled_token_ratio(model, previous, actions, frame) != pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("field", "value"), [("tokens_per_frame", 5), ("tokens_per_frame", 36), ("levels", 6)]
)
def test_a_token_grid_that_does_not_fit_is_refused(field, value):
    with pytest.raises(ValueError):
        DeltaTokenizerConfig(**{field: value})


def test_with_two_context_frames_the_decoder_draws_from_the_older_one_too():
    model = DeltaTokenizer(DeltaTokenizerConfig(**TINY, context_frames=2)).eval()
    tokens, actions = torch.zeros(2, 4, dtype=torch.long), torch.tensor([0, 0])
    a = model.decode(torch.stack([frames(2, 0), frames(2, 1)], 1), actions, tokens)
    b = model.decode(torch.stack([frames(2, 2), frames(2, 1)], 1), actions, tokens)
    assert (a - b).abs().max() > 1e-3  # the older frame (the motion) changes the drawing
    # One frame given: it stands for both (an episode's start, nothing moving yet).
    one = model.decode(frames(2, 1), actions, tokens)
    still = model.decode(torch.stack([frames(2, 1), frames(2, 1)], 1), actions, tokens)
    assert torch.equal(one, still)


def test_a_frame_the_context_predicts_is_coded_as_predicted_and_drawn_back():
    torch.manual_seed(0)
    cfg = DeltaTokenizerConfig(**TINY, context_frames=2, predicted_tolerance=0.05)
    model = DeltaTokenizer(cfg).eval()
    assert cfg.vocab_size == 33
    context, actions = torch.stack([frames(2, 0), frames(2, 1)], 1), torch.tensor([1, 4])
    with torch.no_grad():
        predicted = model.draw_as_predicted(context, actions).clamp(0, 1)
    # Frame 0 is what the context predicts (to rounding); frame 1 is noise.
    target = torch.stack([to_uint8_frames(predicted[0]), frames(1, 9)[0]])
    tokens = model.encode(context, actions, target)
    assert tokens[0].tolist() == [32] * 4 and (tokens[1] < 32).all()
    drawn = model.decode(context, actions, tokens)
    assert torch.allclose(drawn[0], predicted[0])
    assert not torch.allclose(drawn[1], predicted[1], atol=1e-3)
    # round_trip reuses the gate's drawing for frame 0 and decodes only frame 1.
    assert torch.allclose(model.round_trip(context, actions, target), drawn, atol=1e-6)


def test_the_as_predicted_vectors_learn_from_the_stage_loss():
    from worldmodel.lit.delta_tokenizer_module import DeltaTokenizerModule, Pairs

    model = dict(**TINY, context_frames=2, predicted_tolerance=0.1)
    module = DeltaTokenizerModule(model=model, loss={})
    context = torch.stack([frames(3, 0), frames(3, 1)], 1)
    pairs = Pairs(context, torch.tensor([0, 1, 2]), frames(3, 2), torch.tensor([True, False, True]))
    terms, _, _ = module.losses(pairs)
    sum(terms.values()).backward()
    assert module.tokenizer.predicted_codes.grad.abs().sum() > 0
    assert {"predicted_l2", "predicted_changed"} <= set(terms)


@pytest.mark.parametrize(("field", "value"), [("context_frames", 0), ("predicted_tolerance", 1.0)])
def test_a_context_or_tolerance_out_of_range_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        DeltaTokenizerConfig(**{field: value})


def test_windows_hold_the_frames_up_to_each_step_repeating_the_first():
    seq = np.arange(4)[None, :, None]  # (1, T=4, 1)
    assert windows(seq, 2)[0, :, :, 0].tolist() == [[0, 0], [0, 1], [1, 2], [2, 3]]
    assert torch.equal(windows(torch.from_numpy(seq), 2), torch.from_numpy(windows(seq, 2)))
