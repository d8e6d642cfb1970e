{#- Select the export window postgres_window() reads on dbt's own connection (see export_window_statements). -#}
{% macro set_export_window(lo=none, hi=none, ts_from=none, ts_to=none, series=none) %}
    {%- do run_query(export_window_statements(lo=lo, hi=hi, ts_from=ts_from, ts_to=ts_to, series=series) | join(';\n')) -%}
{% endmacro %}
