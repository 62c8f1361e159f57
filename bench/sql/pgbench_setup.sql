-- The data the pgbench checkout scripts run on, in a database migrated by `boost migrate` (so the
-- same tables, indexes and event-log triggers as the server's): one listed service like the
-- simulator's service 1, and :accounts accounts with an API key and a funded wallet at version 0.
insert into services (service_id, provider_service_id, name, category, type, provider_rate,
                      rate_per_1000_kobo, min_quantity, max_quantity, refill, cancel, dripfeed,
                      listed, version, updated_at)
values ('1', '1', 'Instagram Followers [Real, 30-day refill]', 'Instagram Followers', 'Default',
        '0.90', 162000, 10, 100000, true, true, true, true, 1, now());

insert into accounts (account_id, name, status, version, created_at)
select a, 'pgbench-' || a, 'active', 2, now() from generate_series(1, :accounts) a;

insert into api_keys (key_id, account_id, key_hash, abilities, issued_at)
select 'pgbench-' || a, a, sha256(convert_to(a::text, 'UTF8')),
       array['boosting:buy', 'orders:read', 'wallet:read'], now()
  from generate_series(1, :accounts) a;

insert into wallets (account_id, balance_kobo, credited_kobo, version)
select a, 100000000000, 100000000000, 0 from generate_series(1, :accounts) a;
