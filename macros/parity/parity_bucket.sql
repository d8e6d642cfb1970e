{#-
    The time bucket of a parity grain as a UTC timestamp, in SQL that DuckDB and Postgres
    both accept: the day or the hour of ts, or ts itself for row-level drill-down.
-#}
{% macro parity_bucket(grain, ts='ts') -%}
    {%- set units = {'day_shard': 'day', 'day_sensor': 'day', 'hour_sensor': 'hour'} -%}
    {%- if grain == 'row_sensor' -%}
        ({{ ts }} at time zone 'UTC')
    {%- elif grain in units -%}
        date_trunc('{{ units[grain] }}', {{ ts }} at time zone 'UTC')
    {%- else -%}
        {{ exceptions.raise_compiler_error("parity_bucket: grain '" ~ grain ~ "' is not one of day_shard, day_sensor, hour_sensor, row_sensor") }}
    {%- endif -%}
{%- endmacro %}
