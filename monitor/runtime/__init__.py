"""The asyncio shell: gateway, per-call runtime, ASR service, storage writer, composition root."""
