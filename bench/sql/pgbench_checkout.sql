-- One checkout as the server sends it: a single autocommitted call of checkout_place
-- (sql/0011_checkout.sql) with the API key's hash (checked inside), the service version, a
-- fresh order id, the two events' data, the request metadata and the 201 answer around its
-- balance. The server takes order ids 32 at a time and keeps the service row between
-- requests; here each call takes its id from the sequence and names service version 1.
-- Client i pays from account (i mod :accounts) + 1.
\set aid (:client_id % :accounts) + 1
\set r random(1, 1000000000000000)
WITH o AS (SELECT nextval('order_id_seq') AS id) SELECT c.outcome, c.status_code, c.response, c.order_id, c.balance_kobo FROM o, checkout_place(sha256(convert_to((:aid)::text, 'UTF8')), (:aid)::bigint, 'pgbench-' || (:r)::text, sha256(convert_to('pgbench-' || (:r)::text, 'UTF8')), '1', 1, o.id, 1620, gen_random_uuid(), jsonb_build_object('order_id', o.id, 'account_id', (:aid)::bigint, 'idempotency_key', 'pgbench-' || (:r)::text, 'fingerprint', encode(sha256(convert_to('pgbench-' || (:r)::text, 'UTF8')), 'hex'), 'service_id', '1', 'provider_service_id', '1', 'service_name', 'Instagram Followers [Real, 30-day refill]', 'category', 'Instagram Followers', 'type', 'Default', 'link', 'https://instagram.com/p/bench', 'quantity', 10, 'billable_quantity', 10, 'fields', '{}'::jsonb, 'rate_per_1000_kobo', 162000, 'price_kobo', 1620, 'cancel_supported', true), gen_random_uuid(), jsonb_build_object('account_id', (:aid)::bigint, 'order_id', o.id, 'amount_kobo', 1620), jsonb_build_object('request_id', md5((:r)::text), 'actor', 'account:' || (:aid)::bigint, 'key_id', 'pgbench-' || (:aid)::bigint), bench_answer_head(o.id), decode('227d7d', 'hex')) c;
