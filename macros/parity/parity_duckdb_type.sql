{#- The DuckDB type of a lake type (`int`, the source's integer type, reads as bigint). -#}
{% macro parity_duckdb_type(lake_type) -%}
    {%- set types = {'bigint': 'bigint', 'boolean': 'boolean', 'date': 'date', 'double': 'double', 'int': 'bigint',
                     'integer': 'integer', 'smallint': 'smallint', 'timestamptz': 'timestamptz', 'varchar': 'varchar'} -%}
    {%- if lake_type not in types -%}
        {{ exceptions.raise_compiler_error("parity_duckdb_type: lake type '" ~ lake_type ~ "' is not one of " ~ types | list | sort | join(', ')) }}
    {%- endif -%}
    {{ types[lake_type] }}
{%- endmacro %}
