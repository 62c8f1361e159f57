-- An account's orders are listed newest first by when they were placed. Order ids do not give
-- that order once several API processes serve: each takes ids from the sequence in blocks (of
-- 32), so an order placed later by one process can have a smaller id than an earlier one of
-- another, and a client reading the first page could miss its newest order. The index that
-- served `order by order_id desc` gives way to one on (account, placed time, id); none of the
-- three ever changes, so status updates stay heap-only.
drop index orders_account_idx;
create index orders_account_created_idx on orders (account_id, created_at desc, order_id desc);
