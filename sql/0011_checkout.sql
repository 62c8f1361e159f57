-- Checkout in one round trip. The application validates and prices the request against a
-- service row it read earlier (named by its version) and renders everything an order's events
-- and answer hold except the one fact only this transaction can know: the wallet's balance after
-- the debit. The function then makes the whole decision under the idempotency key's advisory
-- lock and the wallet's row lock, appends OrderPlaced and FundsDebited and updates the inline
-- projections (orders, wallets, idempotency_keys) in the caller's single statement, so a
-- checkout is one statement and one transaction.
--
-- Outcomes (first column):
--   placed        the order is recorded; response holds the 201 body kept for replays
--   replayed      the key already answered this body: status_code and response are that answer
--   reused        the key already answered a different body (fingerprint differs)
--   in_progress   another transaction holds the key right now
--   stale_service the service changed or was delisted since the caller read it: re-read, retry
--   insufficient  the wallet cannot pay; balance_kobo holds the balance (nothing is written)
--   unauthorized  p_key_hash is no longer a live key of an active account able to buy: the
--                 caller looks the key up again to tell the client why
-- The key check lets the API skip its own key lookup for a key it has seen before: a revoked
-- key or a disabled account is refused by the very transaction that would have spent the money.
-- A null p_key_hash skips it (callers that authenticated otherwise: tools and tests).

-- Kobo as naira with two decimals, as ledger/money.py's format_kobo renders a balance (>= 0).
create function format_kobo(p_kobo bigint) returns text
language sql immutable strict parallel safe
as $$
    select (p_kobo / 100)::text || '.' || lpad((p_kobo % 100)::text, 2, '0')
$$;

-- Whether p_key_hash is a live key of p_account_id, whose account may buy now; null skips it.
create function checkout_key_live(p_key_hash bytea, p_account_id bigint) returns boolean
language sql stable
as $$
    select p_key_hash is null or exists (
        select 1 from api_keys k join accounts a on a.account_id = k.account_id
         where k.key_hash = p_key_hash and k.account_id = p_account_id and not k.revoked
           and a.status = 'active' and 'boosting:buy' = any(k.abilities))
$$;

-- What the idempotency key has already done: 'unauthorized' (the API key is not live),
-- 'in_progress' (another transaction holds the idempotency key) or 'recorded' (its stored
-- answer); no row when the key is free.
create function checkout_earlier(p_key_hash bytea, p_account_id bigint, p_idempotency_key text)
returns table (outcome text, fingerprint bytea, status_code integer, response bytea,
               order_id bigint)
language plpgsql
as $$
begin
    if not checkout_key_live(p_key_hash, p_account_id) then
        return query select 'unauthorized', null::bytea, null::integer, null::bytea, null::bigint;
    elsif not pg_try_advisory_xact_lock(hashtextextended(p_idempotency_key, p_account_id)) then
        return query select 'in_progress', null::bytea, null::integer, null::bytea, null::bigint;
    else
        return query
            select 'recorded', k.fingerprint, k.status_code, k.response, k.order_id
              from idempotency_keys k
             where k.account_id = p_account_id and k.idempotency_key = p_idempotency_key;
    end if;
end
$$;

create function checkout_place(
    p_key_hash        bytea,
    p_account_id      bigint,
    p_idempotency_key text,
    p_fingerprint     bytea,
    p_service_id      text,
    p_service_version integer,
    p_order_id        bigint,
    p_price_kobo      bigint,
    p_placed_id       uuid,
    p_placed          jsonb,   -- OrderPlaced's data, complete
    p_debit_id        uuid,
    p_debit           jsonb,   -- FundsDebited's data but for balance_after_kobo
    p_metadata        jsonb,
    p_response_head   bytea,   -- the 201 body up to the balance after the debit ...
    p_response_tail   bytea    -- ... and after it
)
returns table (outcome text, status_code integer, response bytea, order_id bigint,
               balance_kobo bigint)
language plpgsql
as $$
declare
    earlier        record;
    wallet_balance bigint;
    wallet_version integer;
    balance_after  bigint;
    placed_at      timestamptz;
    answer         bytea;
begin
    select * into earlier from checkout_earlier(p_key_hash, p_account_id, p_idempotency_key);
    if earlier.outcome in ('unauthorized', 'in_progress') then
        return query select earlier.outcome, null::integer, null::bytea, null::bigint,
                            null::bigint;
        return;
    end if;
    if earlier.outcome = 'recorded' then
        if earlier.fingerprint <> p_fingerprint then
            return query select 'reused', null::integer, null::bytea, null::bigint, null::bigint;
        else
            return query select 'replayed', earlier.status_code, earlier.response,
                                earlier.order_id, null::bigint;
        end if;
        return;
    end if;

    perform 1 from services s
      where s.service_id = p_service_id and s.version = p_service_version and s.listed;
    if not found then
        return query select 'stale_service', null::integer, null::bytea, null::bigint,
                            null::bigint;
        return;
    end if;

    select w.balance_kobo, w.version into wallet_balance, wallet_version
      from wallets w where w.account_id = p_account_id for update;
    if not found then
        raise exception 'account % has no wallet', p_account_id using errcode = 'P0002';
    end if;
    if wallet_balance < p_price_kobo then
        return query select 'insufficient', null::integer, null::bytea, null::bigint,
                            wallet_balance;
        return;
    end if;
    balance_after := wallet_balance - p_price_kobo;

    -- The log first: its triggers chain the hashes and stamp the feed clock.
    insert into events (event_id, stream_id, version, type, data, metadata)
    values (p_placed_id, 'order-' || p_order_id, 1, 'OrderPlaced', p_placed, p_metadata)
    returning recorded_at into placed_at;
    insert into events (event_id, stream_id, version, type, data, metadata)
    values (p_debit_id, 'wallet-' || p_account_id, wallet_version + 1, 'FundsDebited',
            p_debit || jsonb_build_object('balance_after_kobo', balance_after), p_metadata);

    -- The inline projections, as projections/orders.py and wallets.py fold the same events.
    insert into orders (
        order_id, account_id, idempotency_key, fingerprint, service_id, provider_service_id,
        service_name, category, type, link, quantity, billable_quantity, fields,
        rate_per_1000_kobo, price_kobo, cancel_supported, status, submission, version,
        created_at, updated_at)
    values (
        p_order_id, p_account_id, p_idempotency_key, p_fingerprint, p_service_id,
        p_placed->>'provider_service_id', p_placed->>'service_name', p_placed->>'category',
        p_placed->>'type', p_placed->>'link', (p_placed->>'quantity')::bigint,
        (p_placed->>'billable_quantity')::bigint, p_placed->'fields',
        (p_placed->>'rate_per_1000_kobo')::bigint, p_price_kobo,
        (p_placed->>'cancel_supported')::boolean, 'pending', 'queued', 1, placed_at, placed_at);
    update wallets w
       set balance_kobo = balance_after, debited_kobo = w.debited_kobo + p_price_kobo,
           version = wallet_version + 1
     where w.account_id = p_account_id;
    answer := p_response_head || convert_to(format_kobo(balance_after), 'UTF8')
              || p_response_tail;
    insert into idempotency_keys (account_id, idempotency_key, fingerprint, order_id,
                                  status_code, response)
    values (p_account_id, p_idempotency_key, p_fingerprint, p_order_id, 201, answer);
    return query select 'placed', 201, answer, p_order_id, balance_after;
end
$$;
