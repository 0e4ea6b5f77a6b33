"""callwatch's HTTP API: search, call detail, recordings with range requests, alerts, KPIs,
vCon export, users/roles and the audit trail.

* `monitor.web.api.app` - `create_app(ctx)`: the FastAPI app and its OpenAPI document.
* `monitor.web.api.context` - `ApiContext`: settings, repository, access store, bus, alerts.
* `monitor.web.api.auth` - tokens (Bearer header or `cw_token` cookie), `require_role`, users.
* `monitor.web.api.server` - `ApiServer`: uvicorn served in-process by `Callwatch`.
* `monitor.web.api.calls` - search, detail, recording, vCon export, QA reviews.
* `monitor.web.api.insights` - alerts (list, acknowledge, resolve) and KPIs.
* `monitor.web.api.audit` - writing and reading the audit trail.
* `monitor.web.api.media` - byte ranges (sans-I/O); `monitor.web.api.vcon` - the vCon document.
"""
