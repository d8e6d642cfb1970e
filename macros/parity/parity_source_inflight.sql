{#-
    Keys (the key columns of `declaration`, by name) of the window that have a version in
    Postgres newer than the watermark: rows being written, or updated since the last tick.
    The lake's older version of such a key is left out of the comparison, so in-flight
    rows never raise a false alarm. Read through the version column's index: a handful of
    recent rows.
-#}
{% macro parity_source_inflight(declaration, schema, table, ts_from, ts_to, watermark, sensors=none) %}
    {{- parity_check_declaration(declaration, 'parity_source_inflight') -}}
    {%- set series = postgres_quote_ident(declaration['series']) -%}
    {%- set time = postgres_quote_ident(declaration['time']) -%}
    {%- set types = {} -%}
    {%- for column in declaration['columns'] -%}
        {%- do types.update({column[0]: column[1]}) -%}
    {%- endfor -%}
    {%- set key = [] -%}
    {%- set typed = [] -%}
    {%- for name in declaration['key'] -%}
        {%- do key.append(postgres_quote_ident(name)) -%}
        {%- do typed.append('"' ~ name ~ '"::' ~ parity_duckdb_type(types[name]) ~ ' as "' ~ name ~ '"') -%}
    {%- endfor -%}
    {%- set query -%}
        select distinct {{ key | join(', ') }}
        from {{ postgres_quote_ident(schema) }}.{{ postgres_quote_ident(table) }}
        where {{ postgres_quote_ident(declaration['version']) }} > '{}'::timestamptz and {{ time }} >= '{}'::timestamptz and {{ time }} < '{}'::timestamptz
        {%- if sensors is not none %}
          and {{ series }} = any(array(select jsonb_array_elements_text(convert_from(decode('{}', 'hex'), 'UTF8')::jsonb)))
        {%- endif %}
    {%- endset -%}
    {%- set arguments = [watermark, ts_from, ts_to] + ([] if sensors is none else ['hex(to_json(' ~ sensors ~ ')::varchar)']) -%}
    select {{ typed | join(', ') }}
    from postgres_query('{{ lake_source_catalog() }}', format({{ lake_literal(query) }}, {{ arguments | join(', ') }}))
{% endmacro %}
