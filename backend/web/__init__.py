"""HTTP middleware and the web layer's own helpers: host/token policy, sessions, body limits,
the OpenAPI document. Nothing here imports torch."""
