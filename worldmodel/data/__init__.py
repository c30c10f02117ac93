"""Episodes, the replay buffer, the on-disk episode store and the streaming DataModule."""
