{#-
    An aggregate DuckDB expression: the Postgres array literal (an E'' string, so it means
    the same whatever standard_conforming_strings says) of the values of a VARCHAR column,
    e.g. E'{"a","o\'b"}'. Postgres coerces the untyped literal to the compared column's
    array type. Quotes, backslashes, newlines and unicode in the values survive exactly.
-#}
{% macro postgres_array_literal(column) -%}
    'E''' || replace(replace(
        '{' || string_agg('"' || replace(replace({{ column }}, '\', '\\'), '"', '\"') || '"', ',' order by {{ column }}) || '}',
        '\', '\\'), '''', '''''') || ''''
{%- endmacro %}
