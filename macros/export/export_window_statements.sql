{#-
    The `set variable` statements (SQL text, `;`-separated) that select an export window
    for postgres_window(): lo/hi bound the version column (a tick; hi also caps a backfill),
    ts_from/ts_to bound the time column (a backfill or repair day), series is NULL
    (discover the day's series) or the Postgres array literal of the series to read. NULL
    bounds become +-infinity. Variables are per DuckDB connection: each backfill task runs
    these on its own.
-#}
{% macro export_window_statements(lo=none, hi=none, ts_from=none, ts_to=none, series=none) -%}
    {%- set bounds = {'lo': lo or '-infinity', 'hi': hi or 'infinity', 'ts_from': ts_from or '-infinity', 'ts_to': ts_to or 'infinity'} -%}
    {%- for name, value in bounds.items() %}
    set variable tslake_window_{{ name }} = {{ lake_literal(value) }}::timestamptz;
    {%- endfor %}
    set variable tslake_window_series = {{ 'null::varchar' if series is none else lake_literal(series) }};
{%- endmacro %}
