{#- 'backfill' when `--vars '{backfill_days: N}'` is given, 'repair' with `repair_dates`, else 'tick'. -#}
{% macro lake_export_mode() %}
    {%- set days = var('backfill_days', none) -%}
    {%- if var('repair_dates', none) is not none -%}
        {%- if days is not none -%}
            {{ exceptions.raise_compiler_error("backfill_days and repair_dates cannot be combined: give one of them") }}
        {%- endif -%}
        {{ return('repair') }}
    {%- endif -%}
    {%- if days is none -%}
        {{ return('tick') }}
    {%- endif -%}
    {%- if not modules.re.match('^[0-9]+$', days | string) or days | int < 1 -%}
        {{ exceptions.raise_compiler_error("backfill_days must be a whole number of days >= 1, got '" ~ days ~ "'") }}
    {%- endif -%}
    {{ return('backfill') }}
{% endmacro %}
