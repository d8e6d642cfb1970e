{#- The UTC calendar date of a timestamptz: the lake's `date=` partition. -#}
{% macro utc_date(ts) -%}
    ({{ ts }} at time zone 'UTC')::date
{%- endmacro %}
