-- Wallet balances: the inline projection of the `wallet-<account_id>` streams. The guarded
-- update (`balance_kobo >= price`) under the row lock serialises spending on one wallet, and the
-- check constraint makes a negative balance impossible whatever the code does.

create table wallets (
    account_id    bigint  primary key,
    balance_kobo  bigint  not null check (balance_kobo >= 0),
    credited_kobo bigint  not null default 0 check (credited_kobo >= 0),
    debited_kobo  bigint  not null default 0 check (debited_kobo >= 0),
    refunded_kobo bigint  not null default 0 check (refunded_kobo >= 0),
    version       integer not null,
    check (balance_kobo = credited_kobo - debited_kobo + refunded_kobo)
);
