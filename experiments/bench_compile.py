"""Speed of a training step with and without torch.compile (`compile=true` in training).

    python experiments/bench_compile.py [--threads 2] [--steps 20] [--out experiments/reports]

For the tiny tokenizer and the tiny world model, as configured in conf/: the same
LightningModule built twice from the composed config (compile=false / compile=true),
fed the same fixed batch; one step = losses, backward, AdamW step. Measured in one run,
so the ratios hold on a noisy machine. The first steps, where the compiled module traces
and generates code, are timed separately (compile time plus three steps).
"""

import argparse
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from worldmodel.eval.report import markdown_table, write_report
from worldmodel.models.tokenizer import Tokenizer, TokenizerConfig

CONF = Path(__file__).resolve().parents[1] / "conf"
WARMUP = 3  # a compiled module traces forward and backward in its first steps


def tokenizer_batch(cfg) -> tuple:
    size = cfg.env.frame_size
    frames = torch.tensor([144, 72, 17], dtype=torch.uint8).repeat(
        cfg.tokenizer.batch_size, size, size, 1
    )
    frames[:, 20:22, 30:32] = 236  # a ball
    return (frames,)


def world_model_batch(cfg, tokenizer: Tokenizer) -> tuple:
    b, length = cfg.world_model.batch_size, cfg.world_model.seq_len
    k, num_codes = tokenizer.cfg.tokens_per_frame, tokenizer.cfg.num_codes
    generator = torch.Generator().manual_seed(0)
    batch = {
        "tokens": torch.randint(0, num_codes, (b, length, k), generator=generator),
        "actions": torch.randint(0, 6, (b, length), generator=generator),
        "rewards": torch.zeros(b, length),
        "terminated": torch.zeros(b, length, dtype=torch.bool),
        "mask": torch.ones(b, length, dtype=torch.bool),
    }
    return (batch,)


def build(stage: str, compile: bool):
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose("train", overrides=[f"{stage}.compile={str(compile).lower()}"])
    if stage == "tokenizer":
        return instantiate(cfg.tokenizer.module), tokenizer_batch(cfg)
    model = OmegaConf.to_container(cfg.tokenizer.module.model, resolve=True)
    tokenizer = Tokenizer(TokenizerConfig(**model))
    module = instantiate(cfg.world_model.module, tokenizer=tokenizer, model={"num_actions": 6})
    return module, world_model_batch(cfg, tokenizer)


def time_steps(stage: str, compile: bool, steps: int) -> tuple[float, float]:
    """(seconds of the first WARMUP steps, seconds per step after them)."""
    torch.manual_seed(0)
    module, batch = build(stage, compile)
    module.train()
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer

    def step() -> None:
        terms = module.losses(*batch)[0]
        optimizer.zero_grad()
        sum(terms.values()).backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(WARMUP):
        step()
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return warmup, (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--stages", nargs="+", default=["tokenizer", "world_model"])
    parser.add_argument("--out", type=Path, default=Path("experiments/reports"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results, rows = {}, []
    for stage in args.stages:
        _, eager = time_steps(stage, False, args.steps)
        compile_s, compiled = time_steps(stage, True, args.steps)
        print(f"{stage}: eager {eager:.3f} s/step, compiled {compiled:.3f} s/step", flush=True)
        results[stage] = {
            "eager_step_s": eager,
            "compiled_step_s": compiled,
            "speedup": eager / compiled,
            "compile_s": compile_s,
        }
        rows.append(
            [
                f"{stage} (tiny)",
                f"{eager * 1000:.0f}",
                f"{compiled * 1000:.0f}",
                f"{eager / compiled:.2f}x",
                f"{compile_s:.0f}",
            ]
        )
    results["threads"] = args.threads
    write_report(
        args.out,
        "bench_compile",
        f"Training step with and without torch.compile, {args.threads} CPU threads",
        f"python experiments/bench_compile.py --threads {args.threads} --steps {args.steps}",
        markdown_table(
            ["module", "eager ms/step", "compiled ms/step", "speed-up", f"first {WARMUP} steps, s"],
            rows,
        ),
        results,
    )


if __name__ == "__main__":
    main()
