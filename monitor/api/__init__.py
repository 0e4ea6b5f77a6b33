"""callwatch's HTTP API: search, call detail, recordings with range requests, alerts, KPIs,
vCon export, users/roles and the audit trail.

* `monitor.api.app` - `create_app(ctx)`: the FastAPI app and its OpenAPI document.
* `monitor.api.context` - `ApiContext`: settings, repository, access store, bus, alerts.
* `monitor.api.auth` - tokens (Bearer header or `cw_token` cookie), `require_role`, users.
* `monitor.api.server` - `ApiServer`: uvicorn served in-process by `Callwatch`.
* `monitor.api.calls` - search, detail, recording, vCon export, QA reviews.
* `monitor.api.insights` - alerts (list, acknowledge, resolve) and KPIs.
* `monitor.api.audit` - writing and reading the audit trail.
* `monitor.api.media` - byte ranges (sans-I/O); `monitor.api.vcon` - the vCon document.
"""
