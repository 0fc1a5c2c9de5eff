"""The admin side of a gateway: Prometheus metrics and health endpoints (``[admin]``).

:mod:`gateway.admin.metrics` counts the audit trail and samples the gateway's state;
:mod:`gateway.admin.server` serves ``/metrics``, ``/healthz`` and ``/readyz``. The
composition root (``gateway.app``) builds both; nothing here changes the gateway.
"""
