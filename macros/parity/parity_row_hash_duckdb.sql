{#-
    A row's parity checksum in DuckDB: the first 60 bits of md5 over the row's binary form,
    byte for byte what parity_row_hash_postgres builds with Postgres's send functions:
    ts as int64 microseconds since 2000-01-01 (timestamptz_send), value as its IEEE-754
    bits (float8send; every NaN as the canonical NaN, NULL as a NaN payload no value has,
    -0.0 as 0.0, which it equals: DuckDB's window and sort operators may drop the sign),
    quality as int64 (int8send) and a NULL flag byte; all big-endian.
    Summed over a group it is order-independent, exact, and equal on both sides.
-#}
{% macro parity_row_hash_duckdb(ts='ts', value='value', quality='quality') -%}
    ('0x' || left(md5(
        (epoch_us({{ ts }}) - 946684800000000)::bit::blob
        || (case
                when {{ value }} is null then 9221120237041090561
                when isnan({{ value }}) then 9221120237041090560
                when {{ value }} = 0 then 0
                else {{ value }}::double::bit::bigint
            end)::bit::blob
        || coalesce({{ quality }}::bigint, 0)::bit::blob
        || ({{ quality }} is null)::utinyint::bit::blob
    ), 15))::ubigint::bigint
{%- endmacro %}
