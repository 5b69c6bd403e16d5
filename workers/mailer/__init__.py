"""The mailer: a consumer group on the events stream that sends verification messages."""
