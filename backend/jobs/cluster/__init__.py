"""Where a job's transitions run: in this process (`local`) or on a pool of Ray actors (`pool`).

The job runner hands each take to a `Workers` implementation and gets its frames back; the
studio's SQLite store, files and events stay on this host either way (docs/architecture.md).
"""
