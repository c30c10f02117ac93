"""Keyboard -> action index, built from the game's own action names.

Keys give directions (up/down/left/right) and fire; the action is the env's action whose
name spells them (e.g. "UPFIRE"). A game whose names are odd (Pong moves its paddle up
with "RIGHT") gets a per-game renaming in KEY_NAMES (worldmodel/play/settings.py, `key_names=`).
"""

from collections.abc import Iterable, Mapping

DIRECTIONS = ("up", "down", "left", "right")
OPPOSITES = ({"up", "down"}, {"left", "right"})


class ActionKeys:
    def __init__(self, action_meanings: Iterable[str], renames: Mapping[str, str] | None = None):
        self.meanings = list(action_meanings)
        self.renames = {k: str(v).upper() for k, v in (renames or {}).items()}
        self.noop = self.meanings.index("NOOP") if "NOOP" in self.meanings else 0

    def action(self, held: set[str]) -> int:
        """`held`: the pressed controls among up/down/left/right/fire."""
        cancelled = set().union(*(pair for pair in OPPOSITES if pair <= held))
        directions = [d for d in DIRECTIONS if d in held and d not in cancelled]
        name = "".join(self.renames.get(d, d.upper()) for d in directions)
        fire = "FIRE" if "fire" in held else ""
        for candidate in (name + fire, name, fire):  # drop what this game can't do
            if candidate in self.meanings:
                return self.meanings.index(candidate)
        return self.noop
