"""Promotion: the registry (versions, tags, the ``champion`` / ``challenger`` aliases) and the rollout
decisions (which version may go live, rollback) that move aliases."""
