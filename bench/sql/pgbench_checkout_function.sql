-- A floor for one checkout: its reads and writes (key, idempotency record, service, wallet lock,
-- two events, the order, the wallet, the idempotency record) as one minimal PL/pgSQL function,
-- without checkout_place's outcomes and checks. Created in the pgbench database only.
create function bench_checkout(p_account_id bigint, p_key text) returns bytea
language plpgsql
as $$
declare
    v_balance bigint;
    v_version integer;
    v_order_id bigint;
    v_fingerprint bytea := sha256(convert_to(p_key, 'UTF8'));
    v_response bytea;
begin
    perform 1 from api_keys k join accounts a on a.account_id = k.account_id
     where k.key_hash = sha256(convert_to(p_account_id::text, 'UTF8')) and not k.revoked;
    if not pg_try_advisory_xact_lock(hashtextextended(p_key, p_account_id)) then
        raise exception 'key in progress';
    end if;
    select response into v_response from idempotency_keys
     where account_id = p_account_id and idempotency_key = p_key;
    if found then
        return v_response;
    end if;
    perform 1 from services where service_id = '1' and listed;
    select balance_kobo, version, nextval('order_id_seq') into v_balance, v_version, v_order_id
      from wallets where account_id = p_account_id for update;
    insert into events (event_id, stream_id, version, type, data, metadata)
    select * from unnest(
        array[gen_random_uuid(), gen_random_uuid()],
        array['order-' || v_order_id, 'wallet-' || p_account_id],
        array[1, v_version + 1],
        array['OrderPlaced', 'FundsDebited'],
        array[jsonb_build_object('order_id', v_order_id, 'account_id', p_account_id,
                  'idempotency_key', p_key, 'fingerprint', encode(v_fingerprint, 'hex'),
                  'service_id', '1', 'provider_service_id', '1',
                  'service_name', 'Instagram Followers [Real, 30-day refill]',
                  'category', 'Instagram Followers', 'type', 'Default',
                  'link', 'https://instagram.com/p/bench', 'quantity', 10,
                  'billable_quantity', 10, 'fields', '{}'::jsonb, 'rate_per_1000_kobo', 162000,
                  'price_kobo', 1620, 'cancel_supported', true),
              jsonb_build_object('account_id', p_account_id, 'order_id', v_order_id,
                  'amount_kobo', 1620, 'balance_after_kobo', v_balance - 1620)],
        array[jsonb_build_object('request_id', md5(p_key), 'actor', 'account:' || p_account_id,
                  'key_id', 'pgbench-' || p_account_id),
              jsonb_build_object('request_id', md5(p_key), 'actor', 'account:' || p_account_id,
                  'key_id', 'pgbench-' || p_account_id)]);
    insert into orders (order_id, account_id, idempotency_key, fingerprint, service_id,
                        provider_service_id, service_name, category, type, link, quantity,
                        billable_quantity, fields, rate_per_1000_kobo, price_kobo,
                        cancel_supported, status, submission, version, created_at, updated_at)
    values (v_order_id, p_account_id, p_key, v_fingerprint, '1', '1',
            'Instagram Followers [Real, 30-day refill]', 'Instagram Followers', 'Default',
            'https://instagram.com/p/bench', 10, 10, '{}', 162000, 1620, true, 'pending',
            'queued', 1, clock_timestamp(), clock_timestamp());
    update wallets set balance_kobo = v_balance - 1620, debited_kobo = debited_kobo + 1620,
                       version = v_version + 1
     where account_id = p_account_id and version = v_version;
    v_response := convert_to('{"success":true,"data":{"order_id":"' || v_order_id
        || '","status":"pending","balance_after":"' || ((v_balance - 1620) / 100) || '.00"}}',
        'UTF8');
    insert into idempotency_keys (account_id, idempotency_key, fingerprint, order_id,
                                  status_code, response)
    values (p_account_id, p_key, v_fingerprint, v_order_id, 201, v_response);
    return v_response;
end
$$;

-- The 201 answer up to the balance, as the server renders it for pgbench_checkout.sql's order
-- (kept here: pgbench would read the colons of JSON text in its script as variables).
create function bench_answer_head(p_order_id bigint) returns bytea
language sql immutable
as $$
    select convert_to('{"success":true,"data":{"order_id":"' || p_order_id
        || '","status":"pending","service_id":"1","service_name":"Instagram Followers [Real,'
        || ' 30-day refill]","category":"Instagram Followers","type":"Default","link":'
        || '"https://instagram.com/p/bench","quantity":10,"price":"16.20","currency":"NGN",'
        || '"cancel":true,"balance_after":"', 'UTF8')
$$;
