"""experiments/bench_play.py's count of the multiply-adds a frame costs."""

import importlib.util
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.test_delta_engine import TOKENIZER, WORLD_MODEL
from worldmodel.bundle import load_bundle, save_bundle
from worldmodel.envs.atari import EnvSpec
from worldmodel.models.delta_tokenizer import DeltaTokenizer, DeltaTokenizerConfig
from worldmodel.models.delta_world_model import DeltaWorldModel, DeltaWorldModelConfig

SCRIPT = Path(__file__).parents[1] / "experiments" / "bench_play.py"


def bench_play():
    spec = importlib.util.spec_from_file_location("bench_play", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def decode_multiply_adds(tokenizer: DeltaTokenizer) -> float:
    frame = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    action = torch.zeros(1, dtype=torch.long)
    tokens = torch.zeros(1, tokenizer.frame_tokens, dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        tokenizer.decode(frame, action, tokens)
    return counter.get_total_flops() / 2


def test_a_frame_counts_its_decode_once_beside_the_world_model(tmp_path):
    torch.manual_seed(0)
    world_model = DeltaWorldModel(DeltaWorldModelConfig(**WORLD_MODEL)).eval()
    bench, counts, decodes = bench_play(), [], []
    for channels in (8, 16):  # the same world model, a wider tokenizer
        tokenizer = DeltaTokenizer(DeltaTokenizerConfig(**{**TOKENIZER, "channels": channels}))
        path = tmp_path / f"{channels}.ckpt"
        bundle = load_bundle(save_bundle(path, tokenizer, world_model, EnvSpec(), ("NOOP",) * 6))
        counts.append(bench.multiply_adds_per_frame(bundle))
        decodes.append(decode_multiply_adds(bundle.tokenizer))
    assert counts[0] > decodes[0] > 0  # the world model's forwards and the embedding too
    assert counts[1] - counts[0] == decodes[1] - decodes[0]
