"""The job layer: the queue and its lanes, the runner, the store, the event fan-out, the sliders,
the analyzers and where transitions run (cluster)."""
