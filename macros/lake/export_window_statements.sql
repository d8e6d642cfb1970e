{#-
    The `set variable` statements that select an export window for postgres_window():
    lo/hi bound inserted_at (a tick; hi also caps a backfill), ts_from/ts_to bound ts (a
    backfill day), series is NULL (discover the day's series) or the Postgres array literal
    of the series to read. NULL bounds become +-infinity. Returned as text so a backfill
    task can run them on its own DuckDB connection (variables are per connection).
-#}
{% macro export_window_statements(lo=none, hi=none, ts_from=none, ts_to=none, series=none) %}
    {%- set bounds = {'lo': lo or '-infinity', 'hi': hi or 'infinity', 'ts_from': ts_from or '-infinity', 'ts_to': ts_to or 'infinity'} -%}
    {%- set statements = [] -%}
    {%- for name, value in bounds.items() -%}
        {%- do statements.append('set variable tslake_window_' ~ name ~ ' = ' ~ lake_literal(value) ~ '::timestamptz') -%}
    {%- endfor -%}
    {%- do statements.append('set variable tslake_window_series = ' ~ ('null::varchar' if series is none else lake_literal(series))) -%}
    {{ return(statements) }}
{% endmacro %}
