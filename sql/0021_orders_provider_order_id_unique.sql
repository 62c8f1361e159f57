-- One provider order answers for one of ours: the poller asks after each provider id once, and
-- a status of it would settle (and refund) every order recorded with it. The database now
-- refuses a second order with an id already recorded, whoever records it: an operator's
-- resolve, or an `add` reply of a panel that hands out an id twice (that order then stays
-- attempting and becomes unknown, for an operator). Orders without an id are not indexed.
do $$
declare
    shared text;
begin
    select provider_order_id into shared from orders
     where provider_order_id is not null
     group by provider_order_id having count(*) > 1 limit 1;
    if found then
        raise exception 'provider order id % is recorded for more than one order', shared
            using hint = 'find them with: select order_id, provider_order_id from orders where'
                         ' provider_order_id in (select provider_order_id from orders group by 1'
                         ' having count(*) > 1); follow each in the provider''s panel, then'
                         ' migrate again once one order holds each id';
    end if;
end
$$;

create unique index orders_provider_order_id_key on orders (provider_order_id)
    where provider_order_id is not null;
