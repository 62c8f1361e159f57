-- Several checkouts in one transaction: the server gathers the checkouts that arrive while others
-- are in flight and sends them as one statement (ledger/checkout_batch.py), so that they share
-- one round trip, one commit and one WAL flush instead of paying each their own.
--
-- Each element is one call of checkout_place (sql/0011_checkout.sql), with the same arguments,
-- and its row comes back as that call's, numbered from 1 by its position (item). Every
-- decision stays checkout_place's: a later element sees what an earlier one wrote, so two
-- checkouts of one wallet debit it one after the other, and a key named twice is placed once
-- and replayed once (the advisory lock is the transaction's own). An element's refusal
-- (insufficient, reused, in_progress, stale_service, unauthorized) is a row like any other and
-- writes nothing. Only an error (a missing wallet, a statement timeout) aborts the whole
-- statement; the caller then places each checkout on its own, so one bad request cannot refuse
-- the others.
--
-- The elements are decided in account order, and in array order within an account: wallet row
-- locks are then taken as every path that locks several wallets takes them (ascending account),
-- so two batches never wait on each other in a cycle, whatever order the caller sent. Rows come
-- back in that order too; item names each one's element.

create function checkout_place_batch(
    p_key_hash        bytea[],
    p_account_id      bigint[],
    p_idempotency_key text[],
    p_fingerprint     bytea[],
    p_service_id      text[],
    p_service_version integer[],
    p_order_id        bigint[],
    p_price_kobo      bigint[],
    p_placed_id       uuid[],
    p_placed          jsonb[],
    p_debit_id        uuid[],
    p_debit           jsonb[],
    p_metadata        jsonb[],
    p_response_head   bytea[],
    p_response_tail   bytea[]
)
returns table (item integer, outcome text, status_code integer, response bytea,
               order_id bigint, balance_kobo bigint)
language plpgsql
as $$
declare
    i       integer;
    placed  record;
begin
    if (select count(distinct coalesce(n, -1)) from unnest(array[
            cardinality(p_key_hash), cardinality(p_account_id), cardinality(p_idempotency_key),
            cardinality(p_fingerprint), cardinality(p_service_id), cardinality(p_service_version),
            cardinality(p_order_id), cardinality(p_price_kobo), cardinality(p_placed_id),
            cardinality(p_placed), cardinality(p_debit_id), cardinality(p_debit),
            cardinality(p_metadata), cardinality(p_response_head),
            cardinality(p_response_tail)]) n) > 1 then
        raise exception 'checkout_place_batch: arrays of different lengths' using errcode = '22023';
    end if;
    if cardinality(p_account_id) > 100 then
        raise exception 'checkout_place_batch: at most 100 checkouts' using errcode = '22023';
    end if;
    for i in select g from generate_subscripts(p_account_id, 1) g order by p_account_id[g], g
    loop
        select * into strict placed
          from checkout_place(p_key_hash[i], p_account_id[i], p_idempotency_key[i],
                              p_fingerprint[i], p_service_id[i], p_service_version[i],
                              p_order_id[i], p_price_kobo[i], p_placed_id[i], p_placed[i],
                              p_debit_id[i], p_debit[i], p_metadata[i], p_response_head[i],
                              p_response_tail[i]) c;
        return query select i, placed.outcome, placed.status_code, placed.response,
                            placed.order_id, placed.balance_kobo;
    end loop;
end
$$;
