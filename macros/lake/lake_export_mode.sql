{#- 'backfill' when `--vars '{backfill_days: N}'` is given, else 'tick'. -#}
{% macro lake_export_mode() %}
    {%- set days = var('backfill_days', none) -%}
    {%- if days is none -%}
        {{ return('tick') }}
    {%- endif -%}
    {%- if not modules.re.match('^[0-9]+$', days | string) or days | int < 1 -%}
        {{ exceptions.raise_compiler_error("backfill_days must be a whole number of days >= 1, got '" ~ days ~ "'") }}
    {%- endif -%}
    {{ return('backfill') }}
{% endmacro %}
