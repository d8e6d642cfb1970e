{#-
    The window's upper bound `hi`, from Postgres's clock (README, "How a tick decides what to export"):
    now() - lag, kept strictly below the start of the oldest open transaction in this
    database. A row's inserted_at is its transaction's start, but the row is visible only
    at commit, so a bound at or past an open transaction's start would skip its rows for
    good. Renders the query (the runner runs it, runner/ops/export.py): one row of stable_hi
    (RFC 3339), postgres_now (Postgres's clock), oldest_xact_start, oldest_xact_pid,
    prepared_xacts, sees_all_sessions, role_name, in_recovery (a hot standby: its
    pg_stat_activity cannot see the primary's transactions, so the runner asks the primary,
    attached as another catalog, README "A hot standby as the source").
-#}
{% macro stable_watermark(catalog=lake_source_catalog()) %}
    {%- set observe -%}
        with open_transactions as (
            select xact_start, pid
            from pg_stat_activity
            where xact_start is not null
              and pid <> pg_backend_pid()
              and backend_type = 'client backend'
              and datname = current_database()
        ),
        oldest as (
            select xact_start, pid from open_transactions order by xact_start limit 1
        )
        select
            least(
                statement_timestamp() - make_interval(secs => {}),
                (select xact_start from oldest) - interval '1 microsecond'
            ) as stable_hi,
            statement_timestamp() as postgres_now,
            (select xact_start from oldest) as oldest_xact_start,
            (select pid from oldest) as oldest_xact_pid,
            (select count(*) from pg_prepared_xacts where database = current_database()) as prepared_xacts,
            pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') as sees_all_sessions,
            current_user::text as role_name,
            pg_is_in_recovery() as in_recovery
    {%- endset -%}
        select
        {{ lake_rfc3339('stable_hi') }} as stable_hi,
        {{ lake_rfc3339('postgres_now') }} as postgres_now,
        {{ lake_rfc3339('oldest_xact_start') }} as oldest_xact_start,
        oldest_xact_pid,
        prepared_xacts,
        sees_all_sessions,
        role_name,
        in_recovery
    from postgres_query('{{ catalog }}', format({{ lake_literal(observe) }}, getvariable('tslake_lag_seconds')))
{% endmacro %}
