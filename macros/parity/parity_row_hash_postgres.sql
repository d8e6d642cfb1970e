{#- A row's parity checksum in Postgres SQL (parity_row_hash, engine postgres): byte-identical to parity_row_hash_duckdb. -#}
{% macro parity_row_hash_postgres(declaration) -%}
    {{ parity_row_hash(declaration, 'postgres') }}
{%- endmacro %}
