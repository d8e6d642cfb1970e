{#-
    A row's parity checksum in Postgres SQL: the first 60 bits of md5 over
    timestamptz_send(ts) || float8send(value) || int8send(quality) || NULL flag, with NaN,
    -0.0 and NULL mapped as in parity_row_hash_duckdb (which must stay byte-identical).
    The text is embedded in a DuckDB string for postgres_query: no braces, no quotes of
    its own beyond what lake_literal doubles.
-#}
{% macro parity_row_hash_postgres(ts='ts', value='value', quality='quality') -%}
    ('x' || left(md5(
        timestamptz_send({{ ts }})
        || case
               when {{ value }} is null then decode('7ff8000000000001', 'hex')
               when {{ value }} = 'NaN'::float8 then decode('7ff8000000000000', 'hex')
               when {{ value }} = 0 then decode('0000000000000000', 'hex')
               else float8send({{ value }})
           end
        || int8send(coalesce({{ quality }}::int8, 0))
        || case when {{ quality }} is null then decode('01', 'hex') else decode('00', 'hex') end
    ), 15))::bit(60)::bigint
{%- endmacro %}
