"""An auth manager for the governance API tests: Airflow's simple auth manager with one per-DAG rule.

The simple auth manager gives every role read on every DAG, so it cannot show that the governance API
asks about the right DAGs. This one (set as ``[core] auth_manager`` of the test's API server) refuses
user :data:`ANALYST` read access to the audit log of the DAGs of model :data:`RESTRICTED_MODEL`, and
decides everything else as the simple auth manager does.
"""

from __future__ import annotations

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

ANALYST = "analyst"
RESTRICTED_MODEL = "gov_api_other"


class PerModelAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method, user, access_entity: DagAccessEntity | None = None,
                          details: DagDetails | None = None) -> bool:
        if (user.username == ANALYST and access_entity == DagAccessEntity.AUDIT_LOG and details is not None
                and details.id is not None and details.id.endswith(f"_{RESTRICTED_MODEL}")):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
