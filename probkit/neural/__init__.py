"""Neural sequence models for probkit (selective state spaces, RWKV, convolutions)."""
