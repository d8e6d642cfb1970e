{#-
    The source rows of the export window, read with ONE postgres_query so that Postgres
    plans the filter itself. DuckDB's own scan of an attached table would split it into
    ctid page ranges and read the whole table. The bounds are DuckDB variables set by the
    lake_dataset materialization (export_window_statements), so the same compiled model
    serves a tick and every backfill task; format() fills them in at bind time.

    Tick: lo < inserted_at <= hi, through the inserted_at index.

    Backfill (one UTC day, capped at inserted_at <= hi) has two shapes, chosen by the
    variable tslake_window_series:
    - NULL: series discovery. One real row per series that has rows in the day: a loose
      index scan over the series column (one index descent per distinct series, via the
      index it leads, e.g. the primary key (sensor_id, ts)), then one probe per series
      inside the day (ORDER BY ts LIMIT 1, which only an index on (series, ts) answers
      cheaply, so the planner cannot gamble on a sequential scan that stops early). Works
      without PostgreSQL 18's skip scan.
    - a Postgres array literal of series ids: the rows of those series in the day,
      `series = any(...) and ts in [day) and inserted_at <= hi`. Postgres reads them with a
      bitmap scan of the same index, so a day never costs a full-table scan, and the ts
      bounds let TimescaleDB (or inheritance/partition constraints) prune chunks.

    Repair (`--vars '{repair_dates: [...]}'`, a few days): the whole day in one query,
    `ts in [day) and inserted_at <= hi`.
-#}
{% macro postgres_window(relation, columns, time_column='ts', version_column='inserted_at', series_column='sensor_id') %}
    {%- for name in columns + [time_column, version_column, series_column] -%}
        {%- if not modules.re.match('^[a-z_][a-z0-9_]*$', name) -%}
            {{ exceptions.raise_compiler_error("postgres_window: column '" ~ name ~ "' must be a lowercase identifier (letters, digits, _)") }}
        {%- endif -%}
    {%- endfor -%}
    {%- if series_column not in columns -%}
        {{ exceptions.raise_compiler_error("postgres_window: series_column '" ~ series_column ~ "' must be one of the columns " ~ columns | join(', ')) }}
    {%- endif -%}
    {%- set select_list = '"' ~ columns | join('", "') ~ '"' -%}
    {%- set table = postgres_quote_ident(relation.schema) ~ '.' ~ postgres_quote_ident(relation.identifier) -%}
    {%- if lake_export_mode() == 'backfill' -%}
        {%- set in_day -%}
            "{{ time_column }}" >= '{0}'::timestamptz and "{{ time_column }}" < '{1}'::timestamptz and "{{ version_column }}" <= '{2}'::timestamptz
        {%- endset -%}
        {%- set discovery -%}
            with recursive series as (
                (select "{{ series_column }}" as id from {{ table }} where "{{ series_column }}" is not null order by 1 limit 1)
                union all
                select (select "{{ series_column }}" from {{ table }} where "{{ series_column }}" > series.id order by 1 limit 1)
                from series where series.id is not null
            )
            select probe.* from series cross join lateral (
                select {{ select_list }} from {{ table }}
                where "{{ series_column }}" = series.id and {{ in_day }}
                order by "{{ time_column }}"
                limit 1
            ) as probe
        {%- endset -%}
        {%- set data -%}
            select {{ select_list }} from {{ table }} where "{{ series_column }}" = any({3}) and {{ in_day }}
        {%- endset -%}
        {%- set template = "case when getvariable('tslake_window_series') is null then " ~ lake_literal(discovery | replace('\n', ' ')) ~ " else " ~ lake_literal(data) ~ " end" -%}
        {%- set bounds = "getvariable('tslake_window_ts_from'), getvariable('tslake_window_ts_to'), getvariable('tslake_window_hi'), coalesce(getvariable('tslake_window_series'), '')" -%}
    {%- elif lake_export_mode() == 'repair' -%}
        {%- set predicate -%}
            "{{ time_column }}" >= '{}'::timestamptz and "{{ time_column }}" < '{}'::timestamptz and "{{ version_column }}" <= '{}'::timestamptz
        {%- endset -%}
        {%- set template = lake_literal('select ' ~ select_list ~ ' from ' ~ table ~ ' where ' ~ predicate) -%}
        {%- set bounds = "getvariable('tslake_window_ts_from'), getvariable('tslake_window_ts_to'), getvariable('tslake_window_hi')" -%}
    {%- else -%}
        {%- set predicate -%}
            "{{ version_column }}" > '{}'::timestamptz and "{{ version_column }}" <= '{}'::timestamptz
        {%- endset -%}
        {%- set template = lake_literal('select ' ~ select_list ~ ' from ' ~ table ~ ' where ' ~ predicate) -%}
        {%- set bounds = "getvariable('tslake_window_lo'), getvariable('tslake_window_hi')" -%}
    {%- endif -%}
    postgres_query('{{ lake_source_catalog() }}', format({{ template }}, {{ bounds }}))
{%- endmacro %}
