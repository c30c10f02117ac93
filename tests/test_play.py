from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pygame
import pytest

from worldmodel.bundle import load_bundle
from worldmodel.envs.pong_detector import detect
from worldmodel.play.app import PlayApp
from worldmodel.play.settings import PlaySettings

from .cli import assert_ok, run_module


@pytest.fixture
def app(smoke_run):
    # compile=False: the recording test below runs the default (compiled) path end to end.
    settings = PlaySettings(headless=True, policy="noop", scale=2, compile=False)
    app = PlayApp(load_bundle(smoke_run / "bundle.ckpt"), settings)
    yield app
    app.close()


def key(kind: int, name: int) -> pygame.event.Event:
    return pygame.event.Event(kind, key=name)


def test_scripted_keys_drive_the_game_and_quit_cleanly(app):
    events = {
        0: [key(pygame.KEYDOWN, pygame.K_UP)],
        3: [key(pygame.KEYUP, pygame.K_UP)],
        5: [key(pygame.KEYDOWN, pygame.K_ESCAPE)],
    }
    seen = []
    original = app.action

    def spy() -> int:
        seen.append(original())
        return seen[-1]

    app.action = spy
    assert app.run(steps=50, events_at=events) == 5  # Esc quits before the 6th frame
    up = app.keys.meanings.index("RIGHT")  # Pong's name for "paddle up"
    assert seen[:3] == [up, up, up] and seen[3:] == [0, 0]
    assert app.steps == 5


def test_side_by_side_renders_both_panels(app):
    assert app.screen.get_width() == app.size  # dream mode: one panel
    m_key = [key(pygame.KEYDOWN, pygame.K_m)]
    app.run(steps=3, events_at={0: m_key, 1: m_key})  # dream -> real -> side
    assert app.settings.mode == "side" and app.screen.get_width() == 2 * app.size
    pixels = pygame.surfarray.array3d(app.screen).transpose(1, 0, 2)
    left, right = pixels[40:, : app.size], pixels[40:, app.size :]
    assert left.std() > 5 and right.std() > 5  # both panels hold a picture
    # The left panel is the real game: its brown background colour dominates.
    assert np.abs(np.median(left.reshape(-1, 3), axis=0) - [144, 72, 17]).max() < 10


def test_pause_and_single_step(app):
    events = {0: [key(pygame.KEYDOWN, pygame.K_p)], 2: [key(pygame.KEYDOWN, pygame.K_n)]}
    app.run(steps=4, events_at=events)
    assert app.paused and app.steps == 1


def test_headless_recording_writes_a_video_with_every_frame(smoke_run, tmp_path):
    video = tmp_path / "session.mp4"
    result = run_module(
        "worldmodel.play",
        f"ckpt={smoke_run / 'bundle.ckpt'}",
        "headless=true",
        "steps=12",
        f"record={video}",
        "scale=2",
        timeout=120,
    )
    assert_ok(result)
    # Twelve frames end long before the background compile does: this checks that starting
    # it broke nothing; tests/test_world_model.py waits for the switch.
    assert "first frame shown" in result.stdout
    frames = iio.imread(video)
    assert frames.shape[0] == 12 and frames.shape[-1] == 3


@pytest.mark.parametrize("ckpt_kind", ["missing", "lightning"])
def test_a_bad_checkpoint_is_one_line_and_a_nonzero_exit(smoke_run, tmp_path, ckpt_kind):
    ckpt = {
        "missing": tmp_path / "nope.ckpt",
        "lightning": smoke_run / "tokenizer" / "checkpoints" / "last.ckpt",
    }[ckpt_kind]
    result = run_module("worldmodel.play", f"ckpt={ckpt}", "headless=true", "steps=1", timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "setting",
    [
        "fps=-5",
        "scale=0",
        "temperature=-1",
        "top_p=1.5",
        "mode=dreams",
        "policy=left",
        "steps=-1",
        "record=out.avi",
        "fsp=30",
    ],
)
def test_a_bad_play_setting_is_one_line_before_the_bundle_is_read(tmp_path, setting):
    # The checkpoint does not exist either: the setting is refused first.
    result = run_module(
        "worldmodel.play", f"ckpt={tmp_path}/nope.ckpt", "headless=true", setting, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert setting.split("=")[0] in result.stderr


SHIPPED = Path(__file__).resolve().parents[1] / "models" / "pong_tiny.bundle.ckpt"


def test_the_shipped_model_moves_the_paddle_the_way_the_keys_say():
    """In the dream, holding Up vs Down moves the player's paddle in opposite directions."""
    bundle = load_bundle(SHIPPED)
    final_y = {}
    for policy in ("up", "down"):
        settings = PlaySettings(
            headless=True,
            policy=policy,
            greedy=True,
            scale=1,
            compile=False,
        )
        app = PlayApp(bundle, settings)
        app.run(steps=15)
        final_y[policy] = detect(app.dream_frame[None]).player_y[0]
        app.close()
    assert final_y["up"] < final_y["down"] - 5, final_y  # rows grow downwards


def test_the_previous_iris_model_still_loads_and_plays():
    """Both bundle kinds load: the IRIS model shipped before the context-aware one."""
    bundle = load_bundle(SHIPPED.with_name("pong_tiny_iris.bundle.ckpt"))
    assert bundle.kind == "iris" and load_bundle(SHIPPED).kind == "delta"
    app = PlayApp(bundle, PlaySettings(headless=True, policy="up", scale=1, compile=False))
    app.run(steps=3)
    app.close()
