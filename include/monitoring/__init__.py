"""Monitoring: the inference log, delayed labels, drift against the training profile, business KPIs,
the hourly assessment and the alerts it sends."""
