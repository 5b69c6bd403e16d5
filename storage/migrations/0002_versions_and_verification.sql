-- Every account change bumps `version` (1 when created); the Redis read model moves only
-- forward on it (storage.read_model). Existing accounts start at 1, not verified.
-- Constant defaults: Postgres adds these columns without rewriting the tables.
ALTER TABLE users
    ADD COLUMN version           integer     NOT NULL DEFAULT 1,
    ADD COLUMN email_verified_at timestamptz;

ALTER TABLE users_read
    ADD COLUMN version           integer     NOT NULL DEFAULT 1,
    ADD COLUMN email_verified_at timestamptz;

-- Commands that changed an existing account, with the version each produced, written in
-- the transaction that applied it. A redelivered command (its worker died after the
-- commit, before the ack) finds its row here and yields the same outcome and event again,
-- where a second look at the account alone could not tell "verified by this command"
-- from "verified by another one".
CREATE TABLE applied_commands (
    command_id uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL,
    version    integer     NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX applied_commands_user_id_idx ON applied_commands (user_id);
