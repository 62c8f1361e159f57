-- Orders: the inline projection of the `order-<id>` streams, with the service snapshot taken at
-- checkout (a later price change never alters an order's charge or refund). Projection tables
-- carry no foreign keys to one another: each read model is rebuilt and swapped on its own.

create sequence order_id_seq start with 100000001;

create table orders (
    order_id            bigint      primary key,
    account_id          bigint      not null,
    idempotency_key     text        not null,
    fingerprint         bytea       not null,
    service_id          text        not null,
    provider_service_id text        not null,
    service_name        text        not null,
    category            text        not null,
    type                text        not null,
    link                text,
    quantity            bigint,
    billable_quantity   bigint      not null check (billable_quantity >= 1),
    fields              jsonb       not null,
    rate_per_1000_kobo  bigint      not null,
    price_kobo          bigint      not null check (price_kobo >= 0),
    cancel_supported    boolean     not null,
    status              text        not null,
    -- queued → attempting → submitted | failed | unknown; canceled when canceled locally first.
    submission          text        not null,
    submission_attempts integer     not null default 0,
    provider_order_id   text,
    upstream_status     text,
    start_count         bigint,
    remains             bigint,
    refunded_kobo       bigint      not null default 0,
    refunded            boolean     not null default false,
    version             integer     not null,
    created_at          timestamptz not null,
    updated_at          timestamptz not null,
    check (refunded_kobo between 0 and price_kobo)
);

create index orders_account_idx on orders (account_id, order_id desc);
create index orders_queued_idx on orders (order_id) where submission = 'queued';
create index orders_unknown_idx on orders (order_id) where submission = 'unknown';

-- Idempotency records: one per (account, key), holding the request's fingerprint and the exact
-- bytes of the first answer so that a retry gets it back byte for byte.
create table idempotency_keys (
    account_id      bigint  not null,
    idempotency_key text    not null,
    fingerprint     bytea   not null,
    order_id        bigint  not null unique,
    status_code     integer not null,
    response        bytea   not null,
    primary key (account_id, idempotency_key)
);

-- Operational state of the poller, deliberately outside the projections: when an order was
-- last asked about is not a fact of the ledger.
create table order_polls (
    order_id        bigint      primary key,
    next_check_at   timestamptz not null,
    last_checked_at timestamptz,
    failures        integer     not null default 0
);

create index order_polls_due_idx on order_polls (next_check_at);
