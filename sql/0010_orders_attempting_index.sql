-- The submitter's sweeper looks every few seconds for attempts a dead process left behind
-- (submission = 'attempting'); without an index that look is a scan of every order.
create index orders_attempting_idx on orders (updated_at) where submission = 'attempting';
