-- A transaction appending to the log has its id before its first event takes a position. The
-- position is the identity's next value, drawn as the row is built; the id was assigned just
-- after it, by the transaction_id column's default in the same row. A transaction whose first
-- write is an event (opening an account, a catalog sync, a seal) and that lost its CPU between
-- the two held a position without an id, invisible to a snapshot's list of running
-- transactions: a rebuild's stable head (projections/replay.py) could pass over it while it was
-- uncommitted, and lose its event from the rebuilt tables, or a seal cover a position that an
-- event filled later. A statement trigger runs before the statement builds its first row.
create function events_assign_transaction_id() returns trigger
language plpgsql
as $$
begin
    perform pg_current_xact_id();
    return null;
end
$$;

create trigger events_assign_transaction_id
    before insert on events
    for each statement execute function events_assign_transaction_id();
