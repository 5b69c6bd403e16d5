"""Adapters to Postgres and Redis: schema, queries, streams, keys and the read model."""
