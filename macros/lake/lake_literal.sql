{#- The one way a value enters DuckDB SQL text from Jinja: a quoted string literal. -#}
{% macro lake_literal(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
