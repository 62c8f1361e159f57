-- Checkpoints of global feed readers: (transaction_id, global_position) of the last event each
-- reader has handled, so that a reader resumes exactly where it stopped.

create table feed_checkpoints (
    reader          text        primary key,
    transaction_id  xid8        not null,
    global_position bigint      not null,
    updated_at      timestamptz not null default now()
);
