"""Layer 2: the append-only event log (`EventStore`) and publish/subscribe (`EventBus`)."""
