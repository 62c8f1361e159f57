-- The feed's clock must survive a dump/restore into another cluster.
-- The feed is read in transaction-id order and only below the oldest running transaction, which
-- is sound while every id comes from one cluster. Ids belong to a cluster, not to the data: a
-- dump restored into a new cluster brings ids the new cluster has not reached yet, so its new
-- events would sort before the restored history and a reader resuming from its checkpoint would
-- skip them. Hence `events.transaction_id` is a feed clock: this cluster's transaction id plus
-- `feed_epoch.xid_offset`. A visible row at or past the current clock can only come from another
-- cluster; while one exists appends are refused (never mis-ordered), and `feed_epoch_realign()`,
-- which the migration runner calls every time it runs (every boost process migrates at start),
-- moves the offset past the newest row.

create table feed_epoch (
    singleton    boolean     primary key default true check (singleton),
    xid_offset   bigint      not null default 0 check (xid_offset >= 0),
    realigned_at timestamptz
);

insert into feed_epoch default values;

-- Every committed row this snapshot sees came from a transaction below the snapshot's xmax, and
-- the current transaction's own rows carry its own id: so nothing of this cluster is at or past
-- the bound below, and a visible row there was restored from elsewhere.
create function feed_clock_bound(p_xid_offset bigint) returns xid8
language sql stable parallel restricted
as $$
    select (greatest(pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
                     pg_current_xact_id()::text::bigint + 1)
            + p_xid_offset)::text::xid8
$$;

-- Stamps each new event with the feed clock (whatever the insert supplied), or refuses it while
-- the log holds rows from another cluster. The offset and the check come from one statement, so
-- from one snapshot: an append racing a realignment sees either the old offset and the foreign
-- rows (refused) or the new offset (stamped past every restored row).
create function events_feed_clock() returns trigger
language plpgsql
as $$
declare
    clock_offset bigint;
    foreign_rows boolean;
begin
    -- max() walks the feed index backwards: one probe, not a scan (this runs for every row).
    select f.xid_offset,
           coalesce((select max(e.transaction_id) from events e)
                    >= feed_clock_bound(f.xid_offset), false)
      into clock_offset, foreign_rows
      from feed_epoch f;
    if foreign_rows then
        raise exception 'the event log holds transaction ids from another cluster'
            using errcode = '55000',
                  hint = 'run `boost migrate` (it calls feed_epoch_realign()) before appending';
    end if;
    new.transaction_id := (pg_current_xact_id()::text::bigint + clock_offset)::text::xid8;
    return new;
end
$$;

create trigger events_feed_clock
    before insert on events
    for each row execute function events_feed_clock();

-- Moves the clock past the newest event when the log came from another cluster; returns the
-- offset in force. Called by the migration runner (as the schema owner) under its lock.
create function feed_epoch_realign() returns bigint
language plpgsql
as $$
declare
    clock_offset bigint;
    newest bigint;
    foreign_rows boolean;
begin
    select xid_offset into clock_offset from feed_epoch for update;
    select max(e.transaction_id)::text::bigint,
           coalesce(max(e.transaction_id) >= feed_clock_bound(clock_offset), false)
      into newest, foreign_rows
      from events e;
    if foreign_rows then
        -- Past every stored id whatever this cluster's own ids are: the clock never runs back.
        clock_offset := newest + 1;
        update feed_epoch set xid_offset = clock_offset, realigned_at = now();
    end if;
    return clock_offset;
end
$$;

revoke execute on function feed_epoch_realign() from public;

do $$
begin
    if exists (select 1 from pg_roles where rolname = 'boost_app') then
        grant select on feed_epoch to boost_app;
    end if;
end
$$;
