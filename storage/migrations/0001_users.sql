-- Write model: the account. Emails are stored normalised (see domain.rules.normalise_email),
-- so a plain unique constraint makes them unique case-insensitively.
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    name          varchar(255) NOT NULL,
    email         varchar(320) NOT NULL,
    password_hash text         NOT NULL,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    updated_at    timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);

-- Read model: what GET /users/{id} shows, denormalised; written in the same transaction.
CREATE TABLE users_read (
    id           uuid PRIMARY KEY,
    name         varchar(255) NOT NULL,
    email        varchar(320) NOT NULL,
    display_name varchar(255) NOT NULL,
    created_at   timestamptz  NOT NULL
);

CREATE INDEX users_read_email_idx ON users_read (email);
