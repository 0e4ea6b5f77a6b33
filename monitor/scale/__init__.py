"""Scale-out over NATS (docs/scale-out.md): the bus connection, remote ASR (client and worker),
node heartbeats and node loss, and the JetStream event transport. Nothing here is used in the
embedded single-box mode (no `bus.url`)."""
