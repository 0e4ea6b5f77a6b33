"""Alerts (sans-I/O): the rule engine (`engine.AlertEngine`) and the learned call-duration
baselines (`baselines.Baselines`). The asyncio shell is `monitor.runtime.alert_service`."""

from monitor.alerts.baselines import Baselines, DurationBaseline
from monitor.alerts.engine import Alert, AlertEngine, MediaTick

__all__ = ["Alert", "AlertEngine", "Baselines", "DurationBaseline", "MediaTick"]
