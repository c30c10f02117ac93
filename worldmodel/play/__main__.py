"""`python -m worldmodel.play [ckpt=PATH] [mode=side] [headless=true steps=300 record=out.mp4]`"""

import time

START = time.perf_counter()  # before the heavy imports: what a person waits for

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from omegaconf import OmegaConf  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from worldmodel.bundle import BundleError, load_bundle  # noqa: E402
from worldmodel.play.app import PlayApp, PlaySettings, pick_device  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "conf" / "play.yaml"


def main(argv: list[str]) -> int:
    try:
        cfg = OmegaConf.load(CONFIG)
        OmegaConf.set_struct(cfg, True)  # a typo in an option is an error, not ignored
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(argv))
        if cfg.steps < 0:
            raise ValueError(f"steps must be >= 0 (0: until the window closes), got {cfg.steps}")
        if cfg.record and not str(cfg.record).endswith((".mp4", ".gif")):
            raise ValueError(f"record must name an .mp4 or .gif file, got {cfg.record!r}")
        settings = PlaySettings(
            mode=cfg.mode,
            fps=cfg.fps,
            scale=cfg.scale,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            greedy=cfg.greedy,
            seed=cfg.seed,
            compile=cfg.compile,
            headless=cfg.headless,
            policy=cfg.policy,
        )  # checked before the bundle is read
        bundle = load_bundle(cfg.ckpt, device=pick_device(cfg.device))
        settings.key_names = dict(cfg.key_names.get(bundle.spec.game_id, {}))
        app = PlayApp(bundle, settings)
    except (BundleError, OmegaConfBaseException, ValueError, RuntimeError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        if cfg.record:
            app.toggle_recording(cfg.record)
        frames = app.run(steps=cfg.steps)
    finally:
        app.close()
    if app.first_shown is not None:
        print(f"first frame shown {app.first_shown - START:.1f} s after start")
    if cfg.record:
        print(f"recorded {frames} frames to {cfg.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
