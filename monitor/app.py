"""The composition root: builds the database, model workers, queues and gateway once.

Start order: migrate the database, recover calls a crash left open (mark them interrupted,
repair their recordings: monitor/runtime/recovery.py), start the ASR workers (the model is
loaded once per worker and shared by all calls), start the storage writer (a subscriber of the
event bus `self.bus`), the webhook delivery task and the alert service, then open the gateway.
Stop order is the reverse, so every call still open is finalised, its last alerts raised, and
every queued record written before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asr.pool import AsrPool
from asr.scripted import ScriptedTranscriber
from audio_quality.dnsmos import DnsmosScorer
from config.settings import Settings
from monitor.qa import load_compliance_scripts
from monitor.runtime.alert_service import AlertService
from monitor.runtime.asr_service import AsrService, BatchTranscriber
from monitor.runtime.audiosocket_server import AudioSocketServer
from monitor.runtime.bus import EventBus
from monitor.runtime.call_factory import CallFactory
from monitor.runtime.dnsmos_service import DnsmosService
from monitor.runtime.gateway import Gateway
from monitor.runtime.load import LoadMonitor
from monitor.runtime.recovery import recover_interrupted
from monitor.runtime.redaction_check import RedactionCheck
from monitor.runtime.registry import CallRegistry
from monitor.runtime.retention import RetentionTask
from monitor.runtime.sealer import RecordingSealer
from monitor.runtime.storage_journal import StorageJournal, import_journal
from monitor.runtime.storage_sink import StorageWriter
from monitor.runtime.webhooks import WebhookDeliverer
from monitor.web.api.server import ApiServer
from storage.repository import Repository

if TYPE_CHECKING:  # NATS is imported only in NATS mode
    from nats.aio.client import Client

    from monitor.scale.asr_remote import RemoteTranscriber
    from monitor.scale.heartbeat import NodeHeartbeat
    from monitor.scale.node_events import EventBridge, FloorFeed, StorageConsumer
    from monitor.scale.transport import EventPublisher

log = logging.getLogger("callwatch.app")


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("telling the boards about a lost node failed: %s", exc)


def private_dirs(*dirs: Path) -> None:
    """Create the data directories 0700, and tighten ones an older version made 0755; the
    database files in them are made 0600 (new files already are: the CLI sets umask 077)."""
    for d in dirs:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        d.chmod(0o700)
        for db in d.glob("*.db*"):
            db.chmod(0o600)


class Callwatch:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: Every live call's events and the alerts on them (see bus.py); storage listens.
        self.bus = EventBus()
        self.repo: Repository | None = None
        #: The live calls (both transports), found by alerts and the API.
        self.calls = CallRegistry()
        #: The ASR workers, or the scripted transcriber (`[asr] engine = "scripted"`).
        self.pool: AsrPool | ScriptedTranscriber | None = None
        #: NATS mode (`bus.url`): the connection, and the transcriber of `asr.remote`.
        self.bus_client: Client | None = None
        self.remote_asr: RemoteTranscriber | None = None
        self.heartbeat: NodeHeartbeat | None = None
        #: NATS mode: this node's events out (bridge + publisher), the shared storage
        #: consumer, and the feed of every node's events onto `floor_bus` (the board's bus).
        self.publisher: EventPublisher | None = None
        self.bridge: EventBridge | None = None
        self.storage_consumer: StorageConsumer | None = None
        self.floor_feed: FloorFeed | None = None
        #: What the board hears: `bus` itself, or in NATS mode every node's events.
        self.floor_bus = self.bus
        self.storage: StorageWriter | None = None
        self.asr: AsrService | None = None
        self.gateway: Gateway | None = None
        self.audiosocket: AudioSocketServer | None = None
        self.dnsmos: DnsmosService | None = None
        #: Alerts: acknowledge / resolve (set once started).
        self.alerts: AlertService | None = None
        self.webhooks: WebhookDeliverer | None = None
        self.api: ApiServer | None = None
        #: Overload state, degradation and /api/health.
        self.load: LoadMonitor | None = None
        #: The daily retention pass ([retention]; off while no rule sets a period).
        self.retention: RetentionTask | None = None
        #: Encrypts finished recordings ([recording] encrypt = true).
        self.sealer: RecordingSealer | None = None
        #: Checks the audio a crash left unchecked (audio redaction), after start.
        self.redaction_check: RedactionCheck | None = None

    @property
    def api_url(self) -> str:
        """Where the HTTP API (and the board) listen, e.g. http://127.0.0.1:8080."""
        if self.api is None:
            raise RuntimeError("the API is not running (not started, or [api] enabled = false)")
        return self.api.url

    async def start(self) -> None:
        s = self.settings
        private_dirs(s.data_dir, s.recordings_dir)
        self.repo = Repository.from_url(
            s.database_url, sqlite_synchronous=s.storage.sqlite_synchronous
        )
        await asyncio.to_thread(self.repo.upgrade)
        # What a database outage left in the journal (RELIABILITY.md S2), before recovery:
        # a call it shows open is then recovered like any crashed call.
        journal_dir = s.data_dir / "journal"
        await asyncio.to_thread(import_journal, self.repo, journal_dir)
        if s.bus.enabled:
            # NATS mode (monitor.scale, docs/scale-out.md): heartbeat before the first call.
            from monitor.scale.connect import connect_bus
            from monitor.scale.heartbeat import NodeHeartbeat

            node = s.node.resolved_name
            self.bus_client = await connect_bus(s.bus, f"callwatch-node-{node}")
            await self._start_node_events(node)
            assert self.storage_consumer is not None
            # This node's last events before it stopped may still be in the stream: stored
            # first, so recovery below sees its calls as they ended.
            await self.storage_consumer.caught_up(30.0)
            self.heartbeat = NodeHeartbeat(
                self.bus_client, s.bus, node, self.repo.engine, on_lost=self._node_lost
            )
            await self.heartbeat.start()
        recovered = await asyncio.to_thread(recover_interrupted, self.repo, s)
        self.calls = CallRegistry(resume_seq=self.repo.next_trace_seq)
        if s.asr.remote and self.bus_client is not None:
            # Shared `callwatch asr-worker`s over NATS instead of this node's own workers.
            from monitor.scale.asr_remote import RemoteTranscriber

            self.remote_asr = RemoteTranscriber.from_settings(self.bus_client, s)
        if self.remote_asr is not None and not s.asr.local_fallback:
            pass  # remote only: utterances wait for the workers while the bus is away
        elif s.asr.engine == "scripted":
            self.pool = ScriptedTranscriber(
                s.asr.scripted_lines,
                "zh" if s.asr.language == "zh" else "en",
                s.asr.scripted_delay_s,
                s.asr.scripted_hang,
            )
            await self.pool.start()
        else:
            self.pool = AsrPool(s.asr, s.model_cache_dir)
            await self.pool.start()
        self.storage = StorageWriter(
            self.repo,
            batch_size=s.storage.batch_size,
            group_commit_s=s.storage.group_commit_s,
            queue_size=s.storage.queue_size,
            journal=StorageJournal(journal_dir, s.storage.journal_max_bytes),
            close_timeout_s=s.storage.close_timeout_s,
            # NATS mode: the call events reach the database through the shared durable
            # consumer (StorageConsumer), never also through this writer (no double write).
            bus=None if s.bus.enabled else self.bus,
        )
        self.storage.start()
        self.retention = RetentionTask(s, self.repo.engine)
        self.retention.start()
        own = s.node.resolved_name if s.bus.enabled else None  # scale-out: own calls only
        self.sealer = RecordingSealer(s, self.repo.engine, self.bus, node=own)
        self.sealer.start()
        if s.webhooks.targets:
            self.webhooks = WebhookDeliverer(self.repo, s.webhooks)
            self.webhooks.start()
        self.alerts = AlertService(
            repo=self.repo,
            storage=self.storage,
            bus=self.bus,
            settings=s.alerts,
            webhooks=s.webhooks,
            registry=self.calls,
            on_outbox=self.webhooks.notify if self.webhooks is not None else None,
            settle_s=5.0 if s.bus.enabled else 0.0,  # NATS mode: stored by the stream
            foreign_numbers=s.bus.enabled,  # NATS mode: another node's call, or not stored yet
        )
        if s.alerts.enabled:
            await self.alerts.start()
        # [hook: audio redaction] word times for the masked spans
        words = s.privacy.redact_audio and s.privacy.redact_transcripts
        transcriber: BatchTranscriber | None = self.remote_asr or self.pool
        if self.remote_asr is not None and self.pool is not None:
            from monitor.scale.asr_remote import FallbackTranscriber

            transcriber = FallbackTranscriber(self.remote_asr, self.pool)
        assert transcriber is not None
        self.asr = AsrService.from_settings(transcriber, s.asr, word_timestamps=words)
        self.asr.start()
        scripts = None
        if s.compliance.enabled:
            # The sentence model loads here (a second or two): off the loop.
            scripts = await asyncio.to_thread(
                load_compliance_scripts, s.compliance.scripts_dir, s.compliance.semantic
            )
        if s.quality.dnsmos.enabled:
            dn = s.quality.dnsmos
            scorer = await asyncio.to_thread(
                DnsmosScorer, model=dn.model, intra_op_threads=dn.intra_op_threads
            )
            self.dnsmos = DnsmosService(scorer, max_batch=dn.batch_size)
            self.dnsmos.start()
        factory = CallFactory(s, storage=self.storage, asr=self.asr, registry=self.calls,
                              bus=self.bus, scripts=scripts, dnsmos=self.dnsmos)  # fmt: skip
        self.gateway = Gateway(s, self.storage, self.asr, registry=self.calls, factory=factory)
        if s.gateway.audiosocket_port >= 0:
            self.audiosocket = AudioSocketServer(s, self.gateway)
            await self.audiosocket.start()
        await self.gateway.start()
        # [hook: audio redaction] the audio crashed calls left unchecked: checked in the
        # background (live calls first), the recordings withheld until then
        self.redaction_check = RedactionCheck(s, self.repo, self.asr, on_final=self.sealer.seal)
        self.redaction_check.start(recovered)
        self.load = LoadMonitor(s.load, gateway=self.gateway, asr=self.asr, dnsmos=self.dnsmos,
                                pool=self.pool, storage=self.storage,
                                dnsmos_sample_every_s=s.quality.dnsmos.sample_every_s)  # fmt: skip
        self.load.start()
        if s.api.enabled:
            await self._start_api()

    async def _start_node_events(self, node: str) -> None:
        """NATS mode: publish this node's events, store everyone's once, board all of them."""
        from monitor.scale.node_events import EventBridge, FloorFeed, StorageConsumer
        from monitor.scale.transport import EventPublisher

        assert self.bus_client is not None and self.repo is not None
        s = self.settings
        self.publisher = EventPublisher(self.bus_client, s.bus, on_drop=self._event_dropped)
        await self.publisher.start()
        self.bridge = EventBridge(self.publisher, node)
        self.bus.attach(self.bridge.accept)
        self.storage_consumer = StorageConsumer(self.bus_client, s.bus, self.repo)
        await self.storage_consumer.start()
        self.floor_bus = EventBus()
        self.bus.attach(self.floor_bus.publish)  # own events: straight, not through NATS
        self.floor_feed = FloorFeed(self.bus_client, s.bus, self.floor_bus, self.bridge)
        await self.floor_feed.start()

    def _health(self) -> dict[str, Any]:
        """/api/health: the load monitor's document, plus the bus counters in NATS mode."""
        assert self.load is not None
        doc = self.load.health()
        if self.publisher is not None and self.storage_consumer is not None:
            p, c = self.publisher, self.storage_consumer
            doc["bus"] = {
                "published": p.published, "buffered": p.buffered, "dropped": p.dropped,
                "dropped_essential": p.dropped_essential,
                "stored": c.events_applied, "store_rejected": c.rejected + c.undecodable,
            }  # fmt: skip
        return doc

    def _event_dropped(self, subject: str, msg_id: str, essential: bool) -> None:
        if self.bridge is not None:
            self.bridge.dropped(subject, msg_id, essential)

    def _node_lost(self, node: str, call_ids: list[str]) -> None:
        """A lost node's calls were closed (here, or found so in the database): this node's
        board drops them now; the others are told at once on NATS, and find them in the
        database themselves at their next heartbeat if that notice is lost."""
        if self.floor_feed is None:
            return
        new = self.floor_feed.tell_lost(call_ids)
        if new and self.bus_client is not None and self.bus_client.is_connected:
            task = asyncio.get_running_loop().create_task(self.floor_feed.announce_lost(node, new))
            task.add_done_callback(_log_failure)  # a failed notice only logs (see above)

    async def _start_api(self) -> None:
        from monitor.web.api.app import create_app
        from monitor.web.api.board_reader import RepositoryBoardReader
        from monitor.web.api.context import ApiContext

        assert self.repo is not None and self.gateway is not None
        ctx = ApiContext.for_repo(
            self.settings,
            self.repo,
            bus=self.floor_bus,
            alerts=self.alerts,
            live=self.calls,
            board_reader=RepositoryBoardReader(self.repo),  # the board's view of the database
            health=self._health if self.load is not None else None,
        )
        api = self.settings.api
        self.api = ApiServer(
            create_app(ctx),
            api.host,
            api.port,
            header_timeout_s=api.header_timeout_s,
            keepalive_timeout_s=api.keepalive_timeout_s,
            max_connections=api.max_connections,
            trusted_proxies=api.trusted_proxies,
            ws_ping=(api.ws_ping_interval_s, api.ws_ping_timeout_s),
            ws_compress=api.ws_compress,
        )
        await self.api.start()

    async def stop(self) -> None:
        if self.api is not None:
            await self.api.stop()
        if self.gateway is not None:
            self.gateway.stopping = True
        if self.audiosocket is not None:
            await self.audiosocket.stop()
        if self.gateway is not None:
            await self.gateway.stop()
        if self.load is not None:
            await self.load.close()
        if self.redaction_check is not None:
            await self.redaction_check.stop()  # before ASR: its journals stay for next start
        if self.asr is not None:
            await self.asr.close()
        if self.dnsmos is not None:
            await self.dnsmos.close()
        if self.alerts is not None:
            await self.alerts.close()  # after the gateway: the last calls' alerts are raised
        if self.storage is not None:
            await self.storage.close()
        if self.publisher is not None:
            await self.publisher.close()  # what is buffered goes out (bounded wait)
        if self.storage_consumer is not None:
            with contextlib.suppress(Exception):  # the bus may be gone: another node stores it
                await self.storage_consumer.caught_up(10.0)
        if self.floor_feed is not None:
            await self.floor_feed.close()
        if self.storage_consumer is not None:
            await self.storage_consumer.close()
        if self.sealer is not None:
            await self.sealer.stop()  # after storage: every CallFinalised has been heard
        if self.webhooks is not None:
            await self.webhooks.close()
        if self.pool is not None:
            await self.pool.close()
        if self.heartbeat is not None:
            await self.heartbeat.close()
        if self.bus_client is not None:
            # Every subscription was closed above and the publisher's buffer sent: flush and
            # close. (`drain()` waited out its 30 s timeout on the client's own internal
            # subscriptions, holding a clean stop for nothing.)
            with contextlib.suppress(Exception):
                await self.bus_client.flush(timeout=5)
            await self.bus_client.close()
        if self.retention is not None:
            await self.retention.stop()
        if self.repo is not None:
            self.repo.close()
        log.info("stopped")

    async def run_forever(self, stop: asyncio.Event, *, freeze_heap: bool = False) -> None:
        """Start, serve until `stop` is set, stop. `freeze_heap` (the process is ours:
        `callwatch serve`): once started, what start-up built (models, compliance scripts,
        SQLAlchemy, the web app), which lives as long as the process, is frozen out of the
        garbage collector, so a full collection walks only what the calls made since.
        Unfrozen, full collections stalled the event loop, and every call's audio, for up to
        390 ms with 200 board clients open (RELIABILITY.md L1, L3)."""
        try:  # a failed start (e.g. the bus refused us) still closes what it opened
            await self.start()
            if freeze_heap:
                gc.collect()
                gc.freeze()
            await stop.wait()
        finally:
            await self.stop()
