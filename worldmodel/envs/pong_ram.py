"""Where Pong keeps its objects in the emulator RAM (ALE's Pong, measured here).

ram[BALL_Y] == 0 while no ball is in play. Pixel calibration: worldmodel/envs/pong_detector.py.
"""

BALL_X, BALL_Y = 49, 54
OPPONENT_Y, PLAYER_Y = 50, 51  # paddles: opponent on the left, player on the right
