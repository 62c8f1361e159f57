-- Let an order's later updates be heap-only (HOT): no index entry written, the new row version
-- on the same page as the old one. An update can be HOT only when it changes no column that an
-- index names (in its key or its predicate) and the page has room for the new version.
--
-- The sweeper's index named updated_at, which every update changes, so no update of an order was
-- HOT. It now names order_id (the sweeper's order); the sweeper filters the few attempting orders
-- on updated_at. A status the poller records (status, upstream status, counts, refunds) then
-- touches no indexed column; a change of submission still is not HOT, by the predicates.
--
-- A fillfactor leaves each page room for the updates of its orders, which all come soon after
-- their insert, while the orders are still on the table's last pages. The projection rebuild
-- copies the table's storage parameters to its replayed copy (projections/replay.py).
--
-- The new index is built before the old one goes, so that reads of orders wait only for the
-- drop (writes wait for the build: one scan of the table). The old one is found by its predicate,
-- not its name: a projection rebuild before this migration named the copies' indexes itself.

create index orders_attempting_by_order_idx on orders (order_id) where submission = 'attempting';

do $$
declare
    old_index regclass;
begin
    for old_index in
        select i.indexrelid::regclass from pg_index i
         where i.indrelid = 'public.orders'::regclass
           and i.indexrelid <> 'public.orders_attempting_by_order_idx'::regclass
           and pg_get_expr(i.indpred, i.indrelid) = '(submission = ''attempting''::text)'
    loop
        execute format('drop index %s', old_index);
    end loop;
end
$$;

alter index orders_attempting_by_order_idx rename to orders_attempting_idx;

alter table orders set (fillfactor = 70);
