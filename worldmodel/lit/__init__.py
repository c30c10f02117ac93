"""LightningModules that wrap the plain models for training."""
