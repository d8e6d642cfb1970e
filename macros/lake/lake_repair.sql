{#-
    Repair: re-export whole UTC days from Postgres and replace each day's files in the same
    manifest commit (like `backfill --replace-existing`, for chosen days), so rows deleted
    or rewritten in Postgres without a new inserted_at reach the lake. Rows are capped at
    inserted_at <= the committed watermark, which does not move. A day in the cold tier
    stays cold (runner/core/tiers.py places its new files there).
-#}
{% macro lake_repair(model_sql, dataset, run_id, lake) %}
    {%- set cap = lake['computed_through_ts'] -%}
    {%- if not cap -%}
        {{ exceptions.raise_compiler_error("repair: " ~ dataset ~ " has no committed watermark yet: run `dbt run` (a tick) or a backfill first") }}
    {%- endif -%}
    {%- set ns = namespace(rows=0, generation=lake['generation']) -%}
    {%- set days = lake_repair_dates() -%}
    {%- for day in days -%}
        {%- set next_day = (modules.datetime.date.fromisoformat(day) + modules.datetime.timedelta(days=1)).isoformat() -%}
        {%- do set_export_window(hi=cap, ts_from=day ~ 'T00:00:00Z', ts_to=next_day ~ 'T00:00:00Z') -%}
        {%- set files = write_lake_window(model_sql, dataset, run_id, 'backfill') -%}
        {%- do lake_call('publish', dataset=dataset, run_id=run_id, generation=ns.generation,
                         kind='backfill', files=files, watermark=cap, replace_dates=[day],
                         run_info={'mode': 'repair', 'date': day, 'days': days | length}) -%}
        {%- set ns.generation = ns.generation + 1 -%}
        {%- set ns.rows = ns.rows + files | sum(attribute='rows') -%}
        {{ log("tslake: " ~ dataset ~ ": repair " ~ day ~ ": " ~ files | sum(attribute='rows') ~ " rows in " ~ files | length ~ " files (" ~ loop.index ~ "/" ~ days | length ~ ")", info=True) }}
    {%- endfor -%}
    {{ log("tslake: " ~ dataset ~ ": repair " ~ run_id ~ " re-exported " ~ ns.rows ~ " rows over " ~ days | length ~ " days, capped at inserted_at <= " ~ cap, info=True) }}
{% endmacro %}
