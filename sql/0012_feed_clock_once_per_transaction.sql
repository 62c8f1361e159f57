-- The feed clock's check for rows from another cluster (sql/0009_feed_epoch.sql) once per
-- transaction instead of once per event. The first event a transaction appends reads the offset
-- and makes the check, as before, and leaves "<xid>:<offset>" in a transaction-local setting;
-- the transaction's later events are stamped from it. A transaction's id never changes, and rows
-- from another cluster only arrive by a restore into a quiet database, so what held for its
-- first event holds for its last. This takes the check's index probe and snapshot reads out of
-- all but one insert per transaction (a checkout appends two events, a catalog sync up to 100).

create or replace function events_feed_clock() returns trigger
language plpgsql
as $$
declare
    this_transaction text := pg_current_xact_id()::text;
    stamped text := current_setting('boost.feed_clock', true);
    clock_offset bigint;
    foreign_rows boolean;
begin
    if stamped is not null and split_part(stamped, ':', 1) = this_transaction then
        clock_offset := split_part(stamped, ':', 2)::bigint;
    else
        -- max() walks the feed index backwards: one probe, not a scan.
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
        perform set_config('boost.feed_clock', this_transaction || ':' || clock_offset, true);
    end if;
    new.transaction_id := (this_transaction::bigint + clock_offset)::text::xid8;
    return new;
end
$$;
