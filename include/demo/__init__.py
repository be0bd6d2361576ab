"""Demo and test data: a deterministic generator of the credit-approval dataset (``make demo``, tests)."""
