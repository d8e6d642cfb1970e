{#-
    Keys (sensor_id, ts) of the window that have a version in Postgres newer than the
    watermark: rows being written, or updated since the last tick. The lake's older
    version of such a key is left out of the comparison, so in-flight rows never raise a
    false alarm. Read through the inserted_at index: a handful of recent rows.
-#}
{% macro parity_source_inflight(schema, table, ts_from, ts_to, watermark, sensors=none) %}
    {%- set query -%}
        select distinct sensor_id, ts
        from {{ postgres_quote_ident(schema) }}.{{ postgres_quote_ident(table) }}
        where inserted_at > '{}'::timestamptz and ts >= '{}'::timestamptz and ts < '{}'::timestamptz
        {%- if sensors is not none %}
          and sensor_id = any(array(select jsonb_array_elements_text(convert_from(decode('{}', 'hex'), 'UTF8')::jsonb)))
        {%- endif %}
    {%- endset -%}
    {%- set arguments = [watermark, ts_from, ts_to] + ([] if sensors is none else ['hex(to_json(' ~ sensors ~ ')::varchar)']) -%}
    select sensor_id::varchar as sensor_id, ts::timestamptz as ts
    from postgres_query('{{ lake_source_catalog() }}', format({{ lake_literal(query) }}, {{ arguments | join(', ') }}))
{% endmacro %}
