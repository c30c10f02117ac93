"""`python -m worldmodel.play [ckpt=PATH] [mode=side] [headless=true steps=300 record=out.mp4]`"""

import time

START = time.perf_counter()  # before the heavy imports: what a person waits for

import os  # noqa: E402
import sys  # noqa: E402

from omegaconf import OmegaConf  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from worldmodel.bundle import BundleError, load_bundle  # noqa: E402
from worldmodel.play.app import PlayApp  # noqa: E402
from worldmodel.play.settings import PlaySettings, pick_device  # noqa: E402


def main(argv: list[str]) -> int:
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(PlaySettings), OmegaConf.from_dotlist(argv))
        cfg: PlaySettings = OmegaConf.to_object(cfg)  # a typo in an option is an error
        cfg.check()  # before the bundle is read
        bundle = load_bundle(cfg.ckpt, device=pick_device(cfg.device))
        app = PlayApp(bundle, cfg)
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
    if app.game.compiling:
        # A background torch.compile is still in native code: the interpreter's teardown would
        # abort it ("terminate called without an active exception"); leave without teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
