"""Making a live call: the one place a `LiveCall` is built and registered, for every transport.

Both transports (the websocket gateway and the AudioSocket server) hand the wire's
`CallStarted` here when a call's metadata is known; the factory builds the call's analysis
(scripts, quality settings, the codec's full scale), its `LiveCall` (bus, storage
back-pressure, ASR, DNSMOS) and adds it to the `CallRegistry`. Admission (how many calls
may run) stays with the transports.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from config.settings import Settings
from monitor.core.analysis import CallAnalyzer
from monitor.qa import ScriptBook
from monitor.runtime.asr_service import AsrService
from monitor.runtime.bus import EventBus
from monitor.runtime.call import LiveCall
from monitor.runtime.dnsmos_service import DnsmosService
from monitor.runtime.registry import CallRegistry
from monitor.runtime.storage_sink import StorageWriter
from monitor.wire.events import CallStarted


class CallFactory:
    def __init__(
        self,
        settings: Settings,
        *,
        storage: StorageWriter,
        asr: AsrService,
        registry: CallRegistry,
        bus: EventBus | None = None,
        scripts: ScriptBook | None = None,
        dnsmos: DnsmosService | None = None,
    ) -> None:
        self._settings = settings
        self._storage = storage
        self._bus = bus if bus is not None else storage.bus
        self._asr = asr
        self._scripts = scripts
        self._dnsmos = dnsmos
        self.registry = registry
        self._phases = random.Random()

    def new_call(self, started: CallStarted, protocol: str, peer: str) -> LiveCall:
        s = self._settings
        language = None if s.asr.language == "auto" else s.asr.language
        meta = started.metadata
        call = LiveCall(
            settings=s,
            # The wire codec sets the full scale for level/clipping metrics (μ-law: 32124).
            # A phase of its own: calls that start together do not analyse in the same
            # event-loop turn (a loop-lag spike at every batch: RELIABILITY.md L1).
            analyzer=CallAnalyzer(
                meta,
                s.quality,
                s.grading,
                self._scripts,
                language,
                codec=started.codec,
                batch_phase=self._phases.random(),
            ),  # fmt: skip
            dnsmos=self._dnsmos,
            metadata=meta,
            raw_metadata=started.raw,
            protocol=protocol,
            peer=peer,
            connected_at=datetime.now(UTC),
            storage=self._storage,
            asr=self._asr,
            bus=self._bus,
        )
        self.registry.add(call)
        return call
