-- The floor: the checkout's reads and writes as one minimal function
-- (pgbench_checkout_function.sql), called as a single autocommitted statement.
\set aid (:client_id % :accounts) + 1
\set r random(1, 1000000000000000)
SELECT bench_checkout(:aid, 'pgbench-' || :r);
