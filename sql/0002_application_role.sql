-- The application runs as `boost_app`, a role that may only INSERT and SELECT on the event log.
-- Created only where the migrating user may create roles (an embedded or self-run server); on a
-- managed server without that right the trigger alone guards the log. A role made by someone
-- else (an administrator, the migrations of another database on the server) that this user may
-- not take is left to them: the application then runs as this user, the trigger guarding the log.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'boost_app')
       and exists (select 1 from pg_roles where rolname = current_user
                   and (rolsuper or rolcreaterole)) then
        create role boost_app nologin;
    end if;
    if exists (select 1 from pg_roles where rolname = 'boost_app') then
        begin
            execute format('grant boost_app to %I', current_user);
        exception when insufficient_privilege then
            null;
        end;
        grant usage on schema public to boost_app;
        grant select, insert on events to boost_app;
        revoke update, delete, truncate on events from boost_app;
        grant execute on function event_canonical_bytes(uuid, text, integer, text, jsonb, jsonb)
            to boost_app;
    end if;
end
$$;
