"""The web process: a Starlette app that validates requests and enqueues commands."""
