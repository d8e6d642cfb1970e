{#-
    The days of a backfill (SPEC section 5): every UTC date from `today - days` to `today`
    (Postgres's clock), with what the committed manifest says about each:
    in_lake (the date has committed files) and done (committed by an unfinished backfill
    with the same days and replace_existing, which this run resumes).
    Returns {'days': [{date, next_date, in_lake, done}], 'resume': bool}.
-#}
{% macro lake_backfill_plan(dataset, days, replace_existing, today) %}
    {%- if days | int < 1 -%}
        {{ exceptions.raise_compiler_error("lake_backfill_plan: days must be >= 1, got '" ~ days ~ "'") }}
    {%- endif -%}
    {%- set query -%}
        with manifest as (
            select content::json -> 'datasets' -> {{ lake_literal(dataset) }} as entry
            from read_text(getvariable('tslake_manifest_path'))
        ),
        unfinished as (
            select entry -> 'backfill' as record
            from manifest
            where entry -> 'backfill' ->> 'status' = 'running'
              and (entry -> 'backfill' ->> 'days')::integer = {{ days | int }}
              and (entry -> 'backfill' ->> 'replace_existing')::boolean = {{ 'true' if replace_existing else 'false' }}
        ),
        committed as (
            select unnest(json_keys(entry -> 'partitions')) as date from manifest
        ),
        done as (
            select unnest(from_json(record -> 'committed_dates', '["VARCHAR"]')) as date from unfinished
        ),
        calendar as (
            select day::date as day
            from range(
                date_trunc('day', {{ lake_literal(today) }}::timestamptz) - to_days({{ days | int }}),
                date_trunc('day', {{ lake_literal(today) }}::timestamptz) + interval 1 day,
                interval 1 day
            ) as t(day)
        )
        select
            strftime(day, '%Y-%m-%d') as date,
            strftime(day + interval 1 day, '%Y-%m-%d') as next_date,
            strftime(day, '%Y-%m-%d') in (select date from committed) as in_lake,
            strftime(day, '%Y-%m-%d') in (select date from done) as done,
            (select count(*) from unfinished) > 0 as resume
        from calendar
        order by day
    {%- endset -%}
    {%- set days_out = [] -%}
    {%- set rows = run_query(query).rows -%}
    {%- for row in rows -%}
        {%- do days_out.append({'date': row['date'], 'next_date': row['next_date'], 'in_lake': row['in_lake'], 'done': row['done']}) -%}
    {%- endfor -%}
    {{ return({'days': days_out, 'resume': rows | length > 0 and rows[0]['resume']}) }}
{% endmacro %}
