{#-
    The backfill (SPEC section 5): whole UTC days with ts from 00:00 UTC N days ago up to
    now, rows capped at inserted_at <= the watermark (a fresh stable one on an empty lake),
    one manifest commit per day. With replace_existing a day's old files leave the
    manifest in the commit that adds the new ones; without it, days already in the lake
    are skipped.
-#}
{% macro lake_backfill(model_sql, dataset, run_id, lake, stable) %}
    {%- set days = var('backfill_days') | int -%}
    {%- set replace = var('replace_existing', false) in [true, 'true', 'True', 1] -%}
    {%- set cap = lake['computed_through_ts'] or stable['stable_hi'] -%}
    {%- set plan_query -%}
        with committed as (
            select unnest(json_keys(content::json -> 'datasets' -> {{ lake_literal(dataset) }} -> 'partitions')) as date
            from read_text(getvariable('tslake_manifest_path'))
        ),
        days as (
            select day::date as day
            from range(
                date_trunc('day', {{ lake_literal(cap) }}::timestamptz) - to_days({{ days }}),
                {{ lake_literal(cap) }}::timestamptz,
                interval 1 day
            ) as t(day)
        )
        select
            strftime(day, '%Y-%m-%d') as date,
            strftime(day + interval 1 day, '%Y-%m-%d') as next_date,
            strftime(day, '%Y-%m-%d') in (select date from committed) as in_lake
        from days
        order by day
    {%- endset -%}
    {%- set plan = run_query(plan_query).rows -%}
    {%- set ns = namespace(rows=0, days=0, generation=lake['generation']) -%}
    {%- for day in plan -%}
        {%- if day['in_lake'] and not replace -%}
            {{ log("tslake: " ~ dataset ~ ": " ~ day['date'] ~ " is in the lake already; skipped (use replace_existing to rewrite it)", info=True) }}
        {%- else -%}
            {%- do set_export_window(hi=cap, ts_from=day['date'] ~ 'T00:00:00Z', ts_to=day['next_date'] ~ 'T00:00:00Z') -%}
            {%- set files = write_lake_window(model_sql, dataset, run_id, 'backfill') -%}
            {%- do lake_call('publish', dataset=dataset, run_id=run_id, generation=ns.generation,
                             kind='backfill', files=files, watermark=cap,
                             replace_dates=[day['date']] if replace else [],
                             run_info={'mode': 'backfill', 'date': day['date'], 'days': days}) -%}
            {%- set ns.generation = ns.generation + 1 -%}
            {%- set ns.rows = ns.rows + files | sum(attribute='rows') -%}
            {%- set ns.days = ns.days + 1 -%}
            {{ log("tslake: " ~ dataset ~ ": backfill " ~ day['date'] ~ ": " ~ files | sum(attribute='rows') ~ " rows in " ~ files | length ~ " files (" ~ loop.index ~ "/" ~ plan | length ~ ")", info=True) }}
        {%- endif -%}
    {%- endfor -%}
    {{ log("tslake: " ~ dataset ~ ": backfill " ~ run_id ~ " wrote " ~ ns.rows ~ " rows over " ~ ns.days ~ " days, capped at inserted_at <= " ~ cap, info=True) }}
{% endmacro %}
