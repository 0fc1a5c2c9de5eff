"""The protocol-free core of the gateway (see docs/architecture.md)."""
