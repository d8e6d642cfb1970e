{#- A row's parity checksum in DuckDB (parity_row_hash, engine duckdb): byte-identical to parity_row_hash_postgres. -#}
{% macro parity_row_hash_duckdb(declaration) -%}
    {{ parity_row_hash(declaration, 'duckdb') }}
{%- endmacro %}
