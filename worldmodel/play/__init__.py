"""Play inside the dream: a pygame app over the learned game engine."""
