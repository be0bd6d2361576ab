"""The drift webhook: alerts from Alertmanager, Grafana or the project's own senders start retraining runs
(``POST /modelops/api/v1/drift-alerts``, in the plugin app :mod:`modelops.app`); see
:mod:`include.inbound.drift_alerts`."""
