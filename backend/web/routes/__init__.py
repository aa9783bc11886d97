"""The HTTP and WebSocket routers. They import the job and service layers, never torch."""
