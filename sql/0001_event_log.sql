-- The event log: the only source of truth. Every other table is a projection of it.
-- Rows are immutable (a trigger refuses UPDATE, DELETE and TRUNCATE) and each stream is a
-- hash chain, so an auditor can prove that nothing was altered, removed or reordered.

create table events (
    global_position bigint generated always as identity primary key,
    event_id        uuid        not null unique,
    stream_id       text        not null,
    version         integer     not null check (version >= 1),
    type            text        not null,
    data            jsonb       not null,
    metadata        jsonb       not null default '{}'::jsonb,
    transaction_id  xid8        not null default pg_current_xact_id(),
    recorded_at     timestamptz not null default clock_timestamp(),
    hash            bytea       not null,
    unique (stream_id, version)
);

-- The feed is read in commit-safe order: (transaction_id, global_position).
create index events_feed_idx on events (transaction_id, global_position);

-- The canonical bytes of an event are the text of its identifying columns, of its data and of
-- its metadata (who did it, with which key, in which request) as PostgreSQL renders jsonb (a
-- deterministic form: keys sorted, whitespace fixed). Auditors recompute the same bytes from
-- `data::text` and `metadata::text` without having to agree on a JSON encoder.
create function event_canonical_bytes(
    p_event_id uuid, p_stream_id text, p_version integer, p_type text, p_data jsonb,
    p_metadata jsonb
) returns bytea
language sql immutable strict parallel safe
as $$
    select convert_to(
        p_event_id::text || E'\n' || p_stream_id || E'\n' || p_version::text || E'\n'
        || p_type || E'\n' || p_data::text || E'\n' || p_metadata::text,
        'UTF8')
$$;

-- Each event's hash chains it to the previous event of its stream:
-- sha256(previous hash || canonical bytes), the first event of a stream chaining to nothing.
-- Versions must be contiguous, so the previous event must exist for any version above 1. A gap is
-- what an append sees when it expected a version the stream has not reached (or another writer's
-- uncommitted event holds the version before it): retryable (40001), and named by the constraint
-- `events_version_contiguous` so that the store reports it as a concurrency conflict.
create function events_chain_hash() returns trigger
language plpgsql
as $$
declare
    previous_hash bytea;
begin
    if new.version = 1 then
        previous_hash := ''::bytea;
    else
        select e.hash into previous_hash
          from events e
         where e.stream_id = new.stream_id and e.version = new.version - 1;
        if not found then
            raise exception 'stream % has no version % to follow', new.stream_id, new.version - 1
                using errcode = '40001', constraint = 'events_version_contiguous';
        end if;
    end if;
    new.hash := sha256(previous_hash
        || event_canonical_bytes(new.event_id, new.stream_id, new.version, new.type, new.data,
                                 new.metadata));
    return new;
end
$$;

create trigger events_chain_hash
    before insert on events
    for each row execute function events_chain_hash();

create function events_refuse_change() returns trigger
language plpgsql
as $$
begin
    raise exception 'the event log is append-only (% refused)', tg_op
        using errcode = '42501';
end
$$;

create trigger events_no_update_delete
    before update or delete on events
    for each row execute function events_refuse_change();

create trigger events_no_truncate
    before truncate on events
    for each statement execute function events_refuse_change();

revoke update, delete, truncate on events from public;
