{#-
    The series ids of `sensors` (a VARCHAR[] DuckDB expression, reaching Postgres
    hex-encoded) that the Postgres source holds at all, as column `series`: one indexed
    look-up per id (the key leads with the series column).
-#}
{% macro parity_source_known(declaration, schema, table, sensors) %}
    {{- parity_check_declaration(declaration, 'parity_source_known') -}}
    {%- set query -%}
        select wanted.id as series
        from unnest(array(select jsonb_array_elements_text(convert_from(decode('{}', 'hex'), 'UTF8')::jsonb))) as wanted(id)
        where exists (
            select 1 from {{ postgres_quote_ident(schema) }}.{{ postgres_quote_ident(table) }}
            where {{ postgres_quote_ident(declaration['series']) }} = wanted.id
        )
    {%- endset -%}
    select series::varchar as series
    from postgres_query('{{ lake_source_catalog() }}', format({{ lake_literal(query) }}, hex(to_json({{ sensors }})::varchar)))
{% endmacro %}
