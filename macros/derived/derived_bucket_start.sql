{#-
    The start of the `seconds`-wide bucket holding timestamptz `ts`, buckets aligned to the
    Unix epoch (UTC), as a timestamptz, in DuckDB or Postgres SQL (`dialect`). Integer
    arithmetic on microseconds (DuckDB) / the exact numeric epoch (Postgres): no rounding.
-#}
{% macro derived_bucket_start(ts, seconds, dialect='duckdb') -%}
    {%- if dialect == 'postgres' -%}
        to_timestamp(floor(extract(epoch from {{ ts }}) / {{ seconds | int }}) * {{ seconds | int }})
    {%- else -%}
        make_timestamptz((epoch_us({{ ts }}) // {{ (seconds | int) * 1000000 }}) * {{ (seconds | int) * 1000000 }})
    {%- endif -%}
{%- endmacro %}
