"""Governance: promotion gates, the audit trail of everything that changes what is live, and lineage
(what a version was built from)."""
