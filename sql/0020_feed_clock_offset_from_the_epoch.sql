-- The feed clock's offset is always the epoch's. 0012 took it, for a transaction's events after
-- its first, from the transaction-local setting the first one left; a session may set that
-- setting itself, naming its own transaction and any offset, and so stamp its events at another
-- place in the feed, where readers past that place would never see them. The setting now only
-- says that the transaction has made the check for rows from another cluster (a session that
-- forges it skips that check for itself alone); the offset is read from feed_epoch's one row.
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
        select f.xid_offset into clock_offset from feed_epoch f;
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
