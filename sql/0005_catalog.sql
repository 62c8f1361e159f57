-- The priced catalog: the inline projection of the `service-<id>` streams (synced from the
-- provider, optionally pinned by an operator). A delisted service stays here for old orders.

create table services (
    service_id          text        primary key,
    provider_service_id text        not null,
    name                text        not null,
    category            text        not null,
    type                text        not null,
    provider_rate       text        not null,
    rate_per_1000_kobo  bigint      not null check (rate_per_1000_kobo >= 0),
    pinned_rate_kobo    bigint      check (pinned_rate_kobo >= 0),
    min_quantity        integer     not null,
    max_quantity        integer     not null,
    refill              boolean     not null,
    cancel              boolean     not null,
    dripfeed            boolean     not null default false,
    listed              boolean     not null,
    version             integer     not null,
    updated_at          timestamptz not null
);

create index services_listed_category_idx on services (category, service_id) where listed;
