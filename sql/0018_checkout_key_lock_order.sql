-- The checkout's key check takes its row locks in the order every other path takes them: the
-- account's row first, then the key's. A key rotation (and a ban or a disable) locks the
-- account's row FOR UPDATE and then updates its keys; the check of 0016 share-locked the key
-- first and then waited for the account, so a checkout arriving while a rotation was under way
-- held the key the rotation came to update, each waiting for the other: PostgreSQL broke the
-- deadlock after a second by failing the checkout (or the rotation), and a batch of checkouts
-- with it. Now the checkout waits for the rotation at the account's row, holding nothing the
-- rotation needs, then finds the old key revoked. A null p_key_hash skips the check.
create or replace function checkout_key_live(p_key_hash bytea, p_account_id bigint)
returns boolean
language plpgsql
as $$
begin
    if p_key_hash is null then
        return true;
    end if;
    perform 1 from accounts a
      where a.account_id = p_account_id and a.status = 'active'
        for share;
    if not found then
        return false;
    end if;
    perform 1 from api_keys k
      where k.key_hash = p_key_hash and k.account_id = p_account_id and not k.revoked
        and 'boosting:buy' = any(k.abilities)
        for share;
    return found;
end
$$;
