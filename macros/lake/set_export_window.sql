{#- Set the DuckDB variables postgres_window() reads; NULL bounds become +-infinity. -#}
{% macro set_export_window(lo=none, hi=none, ts_from=none, ts_to=none) %}
    {%- set bounds = {'lo': lo or '-infinity', 'hi': hi or 'infinity', 'ts_from': ts_from or '-infinity', 'ts_to': ts_to or 'infinity'} -%}
    {%- for name, value in bounds.items() -%}
        {%- do run_query('set variable tslake_window_' ~ name ~ ' = ' ~ lake_literal(value) ~ '::timestamptz') -%}
    {%- endfor -%}
{% endmacro %}
