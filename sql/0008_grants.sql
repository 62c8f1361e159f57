-- The application role's rights on the projection tables (read and write, never DDL).
do $$
begin
    if exists (select 1 from pg_roles where rolname = 'boost_app') then
        grant select, insert, update, delete on
            accounts, api_keys, wallets, services, orders, idempotency_keys, order_polls,
            feed_checkpoints
            to boost_app;
        grant usage, select on sequence account_id_seq, order_id_seq to boost_app;
    end if;
end
$$;
