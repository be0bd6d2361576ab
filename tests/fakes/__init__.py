"""Stand-ins that speak a real protocol on loopback, for systems that cannot run here (Slack)."""
