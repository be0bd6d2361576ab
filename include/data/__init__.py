"""Data: the dataset read as the model's config declares it, validated (Great Expectations and the
config's own checks) and fingerprinted over its full content."""
