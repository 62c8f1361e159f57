-- The checkout's key check locks the key's and the account's rows (FOR SHARE) until the
-- checkout commits. Read without a lock, a key could be checked live, the checkout then wait
-- for its wallet's row lock behind another checkout, and an operator's ban, disable or key
-- rotation commit meanwhile (its update took no lock the checkout held): the waiting checkout
-- then spent the money after the account was banned. Now such a change waits for the
-- checkouts that already passed the check (they commit first, and the log says so), and a
-- checkout that comes to the check while a change is pending waits for it and then re-reads
-- the row: banned, disabled or revoked, the key is not live. A null p_key_hash skips the check.
create or replace function checkout_key_live(p_key_hash bytea, p_account_id bigint)
returns boolean
language plpgsql
as $$
begin
    if p_key_hash is null then
        return true;
    end if;
    perform 1
       from api_keys k join accounts a on a.account_id = k.account_id
      where k.key_hash = p_key_hash and k.account_id = p_account_id and not k.revoked
        and a.status = 'active' and 'boosting:buy' = any(k.abilities)
        for share of k, a;
    return found;
end
$$;
