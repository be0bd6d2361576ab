"""The Model Ops view in the Airflow UI: a page and its JSON routes, served by the plugin app under ``/ui``.

:mod:`modelops.ui.routes` holds the router and the static files; :mod:`modelops.ui.status` reads what the
page shows (MLflow, the audit ledger, Triton); :mod:`modelops.ui.models` the response bodies.
``plugins/modelops_plugin.py`` registers the page as an ``external_views`` nav entry.
"""

from __future__ import annotations

# Relative to the API server's base URL (the Airflow UI's <base href>), so the view also works where Airflow is
# served under a path (``[api] base_url = https://host/airflow``): the plugin app is mounted at /modelops.
HREF = "modelops/ui/"
URL_ROUTE = "model-ops"  # the Airflow UI shows the page at /plugin/model-ops
ICON = "modelops/ui/static/icon.svg"

HOURS = 48  # monitored hours the view shows

EXTERNAL_VIEW = {
    "name": "Model Ops",
    "href": HREF,
    "url_route": URL_ROUTE,
    "destination": "nav",
    "nav_top_level": True,
    "icon": ICON,
}
"""The ``external_views`` entry: a top-level nav item that the Airflow UI renders in a frame of its own page."""
