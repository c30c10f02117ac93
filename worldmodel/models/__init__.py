"""Plain nn.Modules: no Lightning, Hydra or gym in here."""
