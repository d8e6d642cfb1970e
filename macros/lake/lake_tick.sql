{#-
    One incremental tick (SPEC section 4): export rows with lo < inserted_at <= hi, where
    lo is the committed watermark (an hour before hi on an empty lake) and hi the stable
    watermark from Postgres, then commit files and watermark in one manifest replace.
-#}
{% macro lake_tick(model_sql, dataset, run_id, lake, stable) %}
    {%- set hold = stable['prepared_xacts'] | int > 0 -%}
    {%- set bounds_query -%}
        with marks as (
            select
                {{ lake_literal(stable['stable_hi']) }}::timestamptz as stable_hi,
                {% if lake['computed_through_ts'] -%}
                    {{ lake_literal(lake['computed_through_ts']) }}::timestamptz
                {%- else -%}
                    {{ lake_literal(stable['stable_hi']) }}::timestamptz - interval 1 hour
                {%- endif %} as lo
        )
        select
            {{ lake_rfc3339('lo') }} as lo,
            {#- Never move the watermark back (a longer lag, a clock step); hold it while a
                prepared transaction exists, since its start time is unknown. -#}
            {{ lake_rfc3339('lo' if hold else 'greatest(lo, stable_hi)') }} as hi
        from marks
    {%- endset -%}
    {%- set bounds = run_query(bounds_query).rows[0] -%}
    {%- if hold -%}
        {{ log("tslake: " ~ dataset ~ ": watermark held: " ~ stable['prepared_xacts'] ~ " prepared transaction(s) in pg_prepared_xacts", info=True) }}
    {%- endif -%}
    {%- set files = [] -%}
    {%- if bounds['lo'] != bounds['hi'] -%}
        {%- do set_export_window(lo=bounds['lo'], hi=bounds['hi']) -%}
        {%- set files = write_lake_window(model_sql, dataset, run_id, 'part') -%}
    {%- endif -%}
    {%- set run_info = {'mode': 'tick', 'window_from': bounds['lo'], 'window_to': bounds['hi'],
                        'oldest_open_xact_start': stable['oldest_xact_start'],
                        'oldest_open_xact_pid': stable['oldest_xact_pid']} -%}
    {%- do lake_call('publish', dataset=dataset, run_id=run_id, generation=lake['generation'],
                     kind='part', files=files, watermark=bounds['hi'], run_info=run_info) -%}
    {%- set rows = files | sum(attribute='rows') -%}
    {{ log("tslake: " ~ dataset ~ ": tick " ~ run_id ~ " exported " ~ rows ~ " rows in " ~ files | length ~ " files, window (" ~ bounds['lo'] ~ ", " ~ bounds['hi'] ~ "]", info=True) }}
{% endmacro %}
