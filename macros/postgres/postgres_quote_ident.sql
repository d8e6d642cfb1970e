{#- A Postgres identifier, double-quoted, so any schema or table name is taken literally. -#}
{% macro postgres_quote_ident(name) -%}
    "{{ name | replace('"', '""') }}"
{%- endmacro %}
