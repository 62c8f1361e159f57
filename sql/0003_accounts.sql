-- Accounts and their API keys: inline projections of the `account-<id>` streams.

create sequence account_id_seq start with 1001;

create table accounts (
    account_id bigint primary key,
    name       text        not null,
    status     text        not null check (status in ('active', 'disabled', 'banned')),
    version    integer     not null,
    created_at timestamptz not null
);

-- Only the hash of a key is stored. An account has at most one live key: issuing a new one
-- revokes the previous in the same transaction.
create table api_keys (
    key_id     text        primary key,
    account_id bigint      not null,
    key_hash   bytea       not null unique,
    abilities  text[]      not null,
    issued_at  timestamptz not null,
    revoked    boolean     not null default false
);

create unique index api_keys_one_live_per_account on api_keys (account_id) where not revoked;
