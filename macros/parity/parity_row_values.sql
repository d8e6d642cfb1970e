{#-
    A row's value columns (neither key nor version, in declared order) as one line of
    text, `value=21.5, quality=0`, for a parity report to show Postgres's row beside the
    lake's. The same SQL runs in DuckDB and in Postgres (inside postgres_query's text:
    no braces). Shown to people only; equality is the checksum's job (parity_row_hash).
-#}
{% macro parity_row_values(declaration) -%}
    {{- parity_check_declaration(declaration, 'parity_row_values') -}}
    {%- set parts = [] -%}
    {%- for column in declaration['columns'] if column[0] not in declaration['key'] and column[0] != declaration['version'] -%}
        {%- do parts.append("'" ~ column[0] ~ "=' || coalesce((\"" ~ column[0] ~ "\")::text, 'null')") -%}
    {%- endfor -%}
    {%- if parts -%}concat_ws(', ', {{ parts | join(', ') }}){%- else -%}''{%- endif -%}
{%- endmacro %}
