"""Fidelity metrics: the Pong object detector and model evaluations."""
