"""`python -m worldmodel.eval bundle=PATH [horizon=30 rollouts=32 closed_loop=true events=true
out=DIR ...]` (every setting: `EvalSettings`)

How faithful the learned game is, three ways:
* open loop: from held-out tracker episodes, the dream fed the recorded actions, compared
  with what really happened per horizon step (with the copy-last and tokenizer baselines);
* events (`events=true`): paddle bounces, wall bounces and points found in the dream within
  +-2 steps of the real ones, on held-out tracker and random-policy episodes;
* closed loop (`closed_loop=true`): a controller that sees only frames plays the real game
  and the dream from the same start; teleports, ghosts, rallies, score consistency.
Prints the tables and writes DIR/fidelity.json, DIR/fidelity_report.md,
DIR/fidelity_vs_horizon.png, DIR/contact_sheet.png and DIR/closed_loop_dream.mp4.
"""

import functools
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from worldmodel.bundle import Bundle, BundleError, load_bundle
from worldmodel.data.episode import Episode
from worldmodel.data.held_out import HeldOut, held_out_episodes
from worldmodel.envs.policies import RandomPolicy, TrackerPolicy
from worldmodel.eval import report
from worldmodel.eval.closed_loop import closed_loop
from worldmodel.eval.events import Court
from worldmodel.eval.fidelity import (
    Rollouts,
    ball_in_play,
    ball_motion,
    detect_rollouts,
    open_loop_events,
    per_step_metrics,
    reward_events,
    roll_out,
)
from worldmodel.eval.tokenizer import tokenizer_scores


@dataclass
class EvalSettings:
    bundle: str = MISSING
    context: int = 4  # real frames before the first imagined one
    horizon: int = 30  # imagined steps per open-loop rollout
    rollouts: int = 32
    temperature: float = 1.0
    top_p: float = 1.0  # sample from the nucleus of this much probability (1: all of it)
    seed: int = 0
    compile: bool = True  # torch.compile the world model's forward and the decoder
    device: str = "cpu"  # where the models run: cpu, cuda
    events: bool = True  # bounce and point events, also on held-out random-policy episodes
    closed_loop: bool = True
    tokenizer: bool = True  # the tokenizer alone on the held-out frames (the dream's ceiling)
    closed_loop_steps: int = 1000
    dreams: int = 4  # sampled closed-loop dreams (and one greedy)
    out: str = "experiments/reports/fidelity"
    data_dir: str = "data/val"
    # The held-out set: by default the one the bundle's training validated on
    episodes: int | None = None
    max_steps: int | None = None

    def check(self) -> None:
        """Every out-of-range setting is one clear error, before any work starts."""
        for name in ("context", "horizon", "rollouts", "dreams", "episodes", "max_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.closed_loop_steps < 10:
            raise ValueError(f"closed_loop_steps must be at least 10, got {self.closed_loop_steps}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def open_loop(
    bundle: Bundle, episodes: list[Episode], cfg: EvalSettings, context: int
) -> tuple[dict, dict[str, Rollouts]]:
    """Per-horizon metrics and ball motion of the sampled and greedy dreams and the two
    baselines, over rollouts from `episodes`; with cfg.events, also the events of both
    dreams and of the tokenizer's reconstruction (the floor a dream cannot beat)."""
    results: dict = {"ball_motion": {}, "events": {}}
    runs, real_objects = {}, None  # the same real frames for every source: detected once
    for name, greedy in (("model", False), ("model_greedy", True)):
        rollouts = roll_out(
            bundle,
            episodes,
            context,
            cfg.horizon,
            cfg.rollouts,
            cfg.temperature,
            cfg.seed,
            top_p=cfg.top_p,
            greedy=greedy,
            compile=cfg.compile,
        )
        if real_objects is None:
            real_objects = detect_rollouts(rollouts.real)
            court = Court(*rollouts.real.shape[2:4])
            in_play = ball_in_play(real_objects, rollouts.copy_last[:, 0])
            results["ball_in_play_rollouts"] = in_play.sum(0).tolist()
        objects = detect_rollouts(rollouts.imagined)
        metrics = per_step_metrics(
            rollouts.real, rollouts.imagined, (real_objects, objects), in_play
        )
        results[name] = {k: v.tolist() for k, v in metrics.items()}
        results["ball_motion"][name] = ball_motion(rollouts.imagined, objects)
        if cfg.events:
            results["events"][name] = open_loop_events(
                (real_objects, rollouts.real_rewards), (objects, rollouts.imagined_rewards), court
            )
        runs[name] = rollouts
    # The baselines do not depend on sampling: computed from the last rollouts' real frames.
    for name, other in (
        ("copy_last", rollouts.copy_last),
        ("tokenizer_ceiling", rollouts.reconstructed),
    ):
        objects = detect_rollouts(other)
        metrics = per_step_metrics(rollouts.real, other, (real_objects, objects), in_play)
        results[name] = {k: v.tolist() for k, v in metrics.items()}
        if name == "tokenizer_ceiling":
            results["ball_motion"][name] = ball_motion(other, objects)
            if cfg.events:  # with the real rewards: its point rows are 1 by construction
                results["events"][name] = open_loop_events(
                    (real_objects, rollouts.real_rewards), (objects, rollouts.real_rewards), court
                )
    results["ball_motion"]["real"] = ball_motion(rollouts.real, real_objects)
    return results, runs


def evaluate(cfg: EvalSettings, bundle: Bundle) -> tuple[dict, dict]:
    """All sections; returns the results (fidelity.json) and the frames for the media."""
    context = min(cfg.context, bundle.world_model.cfg.max_frames - 1)
    trained_on = HeldOut.of_training(bundle.train_config)
    spec = replace(
        trained_on,
        episodes=cfg.episodes or trained_on.episodes,
        max_steps=cfg.max_steps or trained_on.max_steps,
    )
    held_out = functools.partial(held_out_episodes, bundle.spec, cfg.data_dir, spec)
    tracker, runs = open_loop(bundle, held_out(functools.partial(TrackerPolicy)), cfg, context)
    results = {"horizons": list(range(1, cfg.horizon + 1)), **tracker}
    results["reward_events"] = reward_events(
        runs["model"].real_rewards, runs["model"].imagined_rewards
    )
    results["reward_events_greedy"] = reward_events(
        runs["model_greedy"].real_rewards, runs["model_greedy"].imagined_rewards
    )
    media = {"sheet": (runs["model"].real, runs["model"].imagined)}
    if cfg.tokenizer:
        results["tokenizer"] = tokenizer_scores(
            bundle.tokenizer, held_out(functools.partial(TrackerPolicy))
        )
    events = {"tracker": results.pop("events")}
    if cfg.events:
        random_play, _ = open_loop(bundle, held_out(functools.partial(RandomPolicy)), cfg, context)
        events["random"] = random_play.pop("events")
        results["random_policy"] = random_play
        results["events"] = events
    if cfg.closed_loop:
        stats, real, dream = closed_loop(
            bundle,
            cfg.closed_loop_steps,
            cfg.dreams,
            cfg.seed,
            context,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            compile=cfg.compile,
        )
        results["closed_loop"] = stats
        media["video"] = (dream.frames, real.frames)
    results["settings"] = {**OmegaConf.to_container(OmegaConf.structured(cfg)), "context": context}
    return results, media


def write_report(
    results: dict, media: dict, cfg: EvalSettings, argv: list[str], seconds: float
) -> None:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fidelity.json").write_text(json.dumps(results, indent=2))
    report.plot(results, out / "fidelity_vs_horizon.png")
    shown = report.contact_sheet(*media["sheet"], out / "contact_sheet.png")
    rewards = results["reward_events"]
    text = [
        "# Fidelity of the learned game",
        "",
        f"Command: `python -m worldmodel.eval {' '.join(argv)}`  ",
        f"{cfg.rollouts} rollouts from held-out tracker episodes, {results['settings']['context']}"
        f" real context frames, then {cfg.horizon} imagined steps with the recorded actions.",
        "",
        report.horizon_table(results, cfg.horizon),
        "",
        report.in_play_note(results["ball_in_play_rollouts"], cfg.rollouts, cfg.horizon),
        "",
        f"Points (rewards) in these rollouts: real {rewards['real_points']}, predicted "
        f"{rewards['predicted_points']}, matched (same sign within 2 steps, one to one) "
        f"{rewards['points_matched']}.",
        "",
        "Does the ball move and bounce? Each rollout's ball track, real vs imagined:",
        "",
        report.motion_table(results["ball_motion"]),
        "",
        "![fidelity](fidelity_vs_horizon.png)",
        "",
        f"Contact sheet: rows real, dream (sampled), for the first rollouts; columns after "
        f"{', '.join(map(str, shown))} imagined steps.",
        "",
        "![contact sheet](contact_sheet.png)",
        "",
    ]
    if "events" in results:
        text += [
            "## Events (open loop)",
            "",
            "A dream's event matches a real one of the same side (paddle, wall) or sign "
            "(point) within +-2 steps, one to one. Chance: the recall that a real event at a "
            "random time would get (the fraction of 5-step windows holding a dream event).",
            "",
            report.events_table(results["events"]),
            "",
            "Held-out random-policy episodes, per horizon:",
            "",
            report.horizon_table(results["random_policy"], cfg.horizon),
            "",
            report.in_play_note(
                results["random_policy"]["ball_in_play_rollouts"], cfg.rollouts, cfg.horizon
            ),
            "",
        ]
    if "tokenizer" in results:
        text += [
            "## The tokenizer alone",
            "",
            f"All {results['tokenizer']['frames']} held-out tracker frames, each drawn from the "
            "real frames before it (teacher-forced); a context-aware tokenizer also from its own "
            "drawing of it, chained from a real start (the dream's condition); with as-predicted "
            "tokens also drawn as predicted all along (no tokens: the decoder's own physics).",
            "",
            report.tokenizer_table(results["tokenizer"]),
            "",
        ]
    if "closed_loop" in results:
        settings = results["closed_loop"]["settings"]
        clip = report.video(*media["video"], out / "closed_loop_dream.mp4")
        text += [
            "## Closed loop",
            "",
            f"The frame-reading controller plays {settings['steps']} steps of the real game "
            f"and of {settings['dreams']} sampled dreams + 1 greedy one, all from the same "
            f"{settings['context']} real frames. Video (dream | real): {clip.name}.",
            "",
            report.closed_loop_table(results["closed_loop"]),
            "",
        ]
    text.append(f"Evaluation took {seconds:.0f} s.")
    (out / "fidelity_report.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


def main(argv: list[str]) -> int:
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(EvalSettings), OmegaConf.from_dotlist(argv))
        cfg = OmegaConf.to_object(cfg)
        cfg.check()
        bundle = load_bundle(cfg.bundle, cfg.device)
        if bundle.world_model is None:
            raise BundleError(f"{cfg.bundle} holds a tokenizer only: the eval needs a world model")
        start = time.time()
        results, media = evaluate(cfg, bundle)
    except (BundleError, OmegaConfBaseException, ValueError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    write_report(results, media, cfg, argv, time.time() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
