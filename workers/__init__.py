"""The worker process: consumes the commands stream and writes Postgres and the read model."""
