"""Every Redis stream, consumer group, key and channel name of the service, in one place.

All names start with the namespace (``REDIS_NAMESPACE``, default ``signup``). With the
default namespace the names are:

=================================  =====================================================
``signup:commands``                stream of commands (``XADD`` by web, read by workers)
``signup-workers``                 consumer group of the workers on that stream
``signup:deadletters``             stream of entries that could not be processed
``signup:user:{user_id}``          read model: the user's JSON, as ``GET /users/{id}``
``signup:command:{command_id}``    outcome of a command (pending / succeeded / failed)
``signup:idem:{METHOD}:{path}:{k}``  an ``Idempotency-Key`` record (hash)
``signup:reply:{web_id}:{cmd_id}``  pub/sub channel the worker answers a request on
``signup:rate:signup:{client}``    a client's signup count in the current window
=================================  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    namespace: str = "signup"

    @property
    def commands(self) -> str:
        return f"{self.namespace}:commands"

    @property
    def group(self) -> str:
        return f"{self.namespace}-workers"

    @property
    def deadletters(self) -> str:
        return f"{self.namespace}:deadletters"

    def user(self, user_id: str) -> str:
        return f"{self.namespace}:user:{user_id}"

    def command(self, command_id: str) -> str:
        return f"{self.namespace}:command:{command_id}"

    def idempotency(self, method: str, path: str, key: str) -> str:
        return f"{self.namespace}:idem:{method}:{path}:{key}"

    def rate(self, action: str, client_id: str) -> str:
        """A client's request counter for the current rate-limit window."""
        return f"{self.namespace}:rate:{action}:{client_id}"

    def reply_prefix(self, web_id: str) -> str:
        """The channels of one web process: it holds one pattern subscription on them."""
        return f"{self.namespace}:reply:{web_id}:"

    def reply_channel(self, web_id: str, command_id: str) -> str:
        return f"{self.reply_prefix(web_id)}{command_id}"

    @property
    def all_keys_pattern(self) -> str:
        return f"{self.namespace}:*"
