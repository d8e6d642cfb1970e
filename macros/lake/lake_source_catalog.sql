{#- The DuckDB catalog name under which the plugin attaches Postgres (runner/postgres/connection.py). -#}
{% macro lake_source_catalog() -%}
    pg
{%- endmacro %}
