import json

import imageio.v2 as imageio
import numpy as np
import pytest

from worldmodel.eval.fidelity import reward_events
from worldmodel.eval.report import CLOSED_LOOP_ROWS

from .cli import assert_ok, run_experiment_script, run_module


def test_fidelity_eval_writes_a_report_with_baselines(smoke_run, tmp_path):
    out = tmp_path / "fidelity"
    result = run_module(
        "worldmodel.eval",
        f"bundle={smoke_run / 'bundle.ckpt'}",
        "horizon=5",
        "rollouts=3",
        f"out={out}",
        f"data_dir={smoke_run / 'data' / 'val'}",
        "episodes=1",
        "max_steps=64",
        "compile=false",  # the compiled path is covered by the play recording test
        "closed_loop_steps=200",
        "dreams=2",
        timeout=300,
    )
    assert_ok(result)
    metrics = json.loads((out / "fidelity.json").read_text())
    assert metrics["horizons"] == [1, 2, 3, 4, 5]
    for source in ("model", "model_greedy", "copy_last", "tokenizer_ceiling"):
        for key in (
            "player_paddle_err_px",
            "opponent_paddle_err_px",
            "ball_err_px",
            "ball_in_play_err_px",
            "ball_present_agreement",
            "psnr_db",
        ):
            assert len(metrics[source][key]) == 5, (source, key)
    assert {"precision", "recall"} <= set(metrics["reward_events"])
    # The smoke model has barely trained: copying the last real frame must beat it.
    assert metrics["copy_last"]["psnr_db"][0] > metrics["model"]["psnr_db"][0]
    assert set(metrics["ball_motion"]) == {"real", "tokenizer_ceiling", "model", "model_greedy"}
    assert (out / "fidelity_vs_horizon.png").stat().st_size > 0
    assert "tokenizer_ceiling" in (out / "fidelity_report.md").read_text()
    # The tokenizer alone: teacher-forced, and chained from its own drawings (a Delta bundle).
    assert {"ball_recall", "ball_recall_right_of_51px"} <= set(
        metrics["tokenizer"]["teacher_forced"]
    )
    assert "h=30" in metrics["tokenizer"]["chained"]
    assert "## The tokenizer alone" in (out / "fidelity_report.md").read_text()

    # Events on both held-out sources, for both dreams, every kind.
    for source in ("tracker", "random"):
        assert set(metrics["events"][source]) == {"model", "model_greedy", "tokenizer_ceiling"}
        for dream in ("model", "model_greedy", "tokenizer_ceiling"):
            for kind in ("paddle_bounce", "wall_bounce", "point"):
                scores = metrics["events"][source][dream][kind]
                assert set(scores) == {
                    "real",
                    "predicted",
                    "matched",
                    "recall",
                    "precision",
                    "chance",
                }
    assert len(metrics["random_policy"]["model"]["ball_err_px"]) == 5
    # The closed loop: the real game, each dream, their mean, the greedy dream; every row.
    loop = metrics["closed_loop"]
    assert len(loop["dream"]) == 2
    games = [loop["real"], loop["real_tokenized"], loop["dream_mean"], loop["dream_greedy"]]
    games += loop["dream"]
    for game in games:
        assert {key for key, _, _ in CLOSED_LOOP_ROWS} <= set(game)
        assert game["steps"] == 200
    assert loop["real"]["teleports_per_100"] == 0
    assert (out / "closed_loop_dream.mp4").stat().st_size > 1000
    sheet = imageio.imread(out / "contact_sheet.png")
    assert sheet.shape[0] == 2 * 3 * (64 * 4 + 4)  # real + dream rows of the 3 rollouts
    report = (out / "fidelity_report.md").read_text()
    assert "## Closed loop" in report and "## Events (open loop)" in report

    # Side by side (here the same eval as two columns); a name per folder or one line.
    compared = run_experiment_script(
        "compare_models.py", out, out, "--names", "a", "b", "--out", tmp_path / "compared"
    )
    assert_ok(compared)
    rows = json.loads((tmp_path / "compared" / "comparison.json").read_text())["rows"]
    assert any(row[0] == "dream_mean: teleports / 100 steps" for row in rows)
    assert len(rows) > 50 and all(len(row) == 3 and row[1] == row[2] for row in rows)
    refused = run_experiment_script("compare_models.py", out, out, "--names", "a")
    assert refused.returncode == 2 and "one value per eval folder" in refused.stderr


def test_eval_sections_switch_off(smoke_run, tmp_path):
    out = tmp_path / "fidelity"
    result = run_module(
        "worldmodel.eval",
        f"bundle={smoke_run / 'bundle.ckpt'}",
        "horizon=3",
        "rollouts=2",
        f"out={out}",
        f"data_dir={smoke_run / 'data' / 'val'}",
        "episodes=1",
        "max_steps=64",
        "compile=false",
        "closed_loop=false",
        "events=false",
        "tokenizer=false",
        timeout=300,
    )
    assert_ok(result)
    metrics = json.loads((out / "fidelity.json").read_text())
    assert not {"closed_loop", "events", "tokenizer"} & set(metrics)
    assert not (out / "closed_loop_dream.mp4").exists()


@pytest.mark.parametrize(
    "setting",
    ["rollouts=0", "horizon=-1", "top_p=0", "temperature=-1", "closed_loop_steps=5", "rolouts=3"],
)
def test_eval_rejects_a_bad_setting_in_one_line_before_any_work(tmp_path, setting):
    # The bundle does not exist either: the setting is refused before anything is read.
    result = run_module("worldmodel.eval", f"bundle={tmp_path}/x", setting, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert setting.split("=")[0] in result.stderr


def test_eval_rejects_a_bad_bundle_in_one_line(tmp_path):
    result = run_module("worldmodel.eval", f"bundle={tmp_path}/x", timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("error: ")


def test_reward_events_match_within_the_slack():
    real = np.zeros((2, 10))
    real[0, 4], real[1, 7] = 1, -1
    imagined = np.zeros((2, 10))
    imagined[0, 5], imagined[1, 2] = 1, -1  # one near the real point, one far away
    assert reward_events(real, imagined) == {
        "real_points": 2,
        "predicted_points": 2,
        "points_matched": 1,
        "recall": 0.5,
        "precision": 0.5,
    }


def test_a_dropped_ball_counts_as_the_largest_error():
    from worldmodel.eval.fidelity import per_step_metrics

    frame = np.zeros((1, 1, 64, 64, 3), np.uint8)
    frame[...] = (144, 72, 17)
    with_ball = frame.copy()
    with_ball[0, 0, 30:32, 30] = 236
    metrics = per_step_metrics(with_ball, frame)  # the other frame lost the ball
    assert metrics["ball_err_px"][0] == np.hypot(64, 64)


def test_ball_in_play_error_leaves_out_serves_and_points():
    from worldmodel.eval.fidelity import ball_in_play, detect_rollouts, per_step_metrics

    background = np.zeros((64, 64, 3), np.uint8)
    background[...] = (144, 72, 17)

    def frames(xs: list) -> np.ndarray:
        out = np.repeat(background[None], len(xs), 0)
        for t, x in enumerate(xs):
            if x is not None:
                out[t, 30:32, x] = 236
        return out

    # Rollout 0: in play all along, the dream 3 px off. Rollout 1: no ball in the context
    # frame, a serve at step 1 that the dream misses. Rollout 2: in play, then a point at
    # step 2 (the real ball leaves) that the dream misses; then a new serve.
    real = np.stack([frames([20, 22, 24]), frames([30, 32, 34]), frames([50, None, 10])])
    dream = np.stack([frames([23, 25, 27]), frames([None, None, None]), frames([50, 52, 54])])
    context = np.stack([frames([18]), frames([None]), frames([48])])[:, 0]
    in_play = ball_in_play(detect_rollouts(real), context)
    assert in_play.tolist() == [[True] * 3, [False] * 3, [True, False, False]]
    metrics = per_step_metrics(real, dream, in_play=in_play)
    assert metrics["ball_in_play_err_px"].tolist() == [1.5, 3.0, 3.0]
    # Over all rollouts the missed serve counts as the largest error.
    assert metrics["ball_err_px"][0] > 20


def test_ball_motion_counts_bounces_on_a_drawn_track():
    from worldmodel.eval.fidelity import ball_motion

    # A return (with the still step at the paddle) and a wall bounce, both in the middle of
    # the frame; then the ball is lost and reappears moving the other way, which is a new
    # track, not a reversal. The second rollout's ball turns near the right edge, the
    # third's stands still.
    xs, ys = [20, 23, 26, 29, 29, 26, 23, None, 30, 33], [30, 32, 34, 32, 30, 28, 26, None, 40, 41]
    frames = np.zeros((3, len(xs), 64, 64, 3), np.uint8)
    frames[...] = (144, 72, 17)
    for t, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if x is not None:
            frames[0, t, y : y + 2, x] = 236
    for t, x in enumerate([44, 47, 50, 53, 56, 56, 53, 50, 47, 44]):
        frames[1, t, 30:32, x] = 236
    frames[2, :, 30:32, 40] = 236  # the third rollout's ball never moves
    motion = ball_motion(frames)
    assert motion["ball_seen"] == 29 / 30
    # Two-step moves with a ball seen at both ends: 6 on the first track (one across the
    # lost frame) and 8 on the second, all moving; 8 on the third, none.
    assert motion["ball_moving"] == 14 / 22
    steps = frames.shape[0] * frames.shape[1] / 100
    assert motion["horizontal_reversals_per_100"] == 2 / steps
    assert motion["horizontal_reversals_middle_per_100"] == 1 / steps
    assert motion["vertical_reversals_per_100"] == 1 / steps
    assert motion["vertical_reversals_middle_per_100"] == 1 / steps
    # The first track loses its ball once, last seen at x = 23: the second quarter.
    assert motion["ball_lost_per_100_by_quarter"] == [0, 1 / steps, 0, 0]
