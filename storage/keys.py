"""Every Redis stream, consumer group, key and channel name of the service, in one place.

All names start with the namespace (``REDIS_NAMESPACE``, default ``signup``). With the
default namespace the names are:

=================================  =====================================================
``signup:commands``                stream of commands (``XADD`` by web, read by workers)
``signup-workers``                 consumer group of the workers on that stream
``signup:deadletters``             stream of commands that could not be processed
``signup:events``                  stream of domain events (appended by workers on ack)
``signup-mailer``                  consumer group of the mailers on the events stream
``signup:mailer:deadletters``      events the mailer could not deliver (permanent refusal)
``signup:mailer:replays``          dead-lettered events put back for the mailer alone
``signup:user:{user_id}``          read model: the user's JSON, as ``GET /users/{id}``
``signup:command:{command_id}``    outcome of a command (pending / succeeded / failed)
``signup:idem:{METHOD}:{path}:{k}``  an ``Idempotency-Key`` record (hash)
``signup:reply:{web_id}:{cmd_id}``  pub/sub channel the worker answers a request on
``signup:rate:signup:{client}``    a client's signup count in the current window
``signup:rate:resend:{digest}``    an address's verification resends this hour
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

    @property
    def events(self) -> str:
        return f"{self.namespace}:events"

    @property
    def mailer_group(self) -> str:
        return f"{self.namespace}-mailer"

    @property
    def mailer_deadletters(self) -> str:
        return f"{self.namespace}:mailer:deadletters"

    @property
    def mailer_replays(self) -> str:
        """Dead-lettered events replayed for the mailer only: appending them to the events
        stream again would hand them to every other consumer a second time."""
        return f"{self.namespace}:mailer:replays"

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
