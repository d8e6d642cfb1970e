{#- A timestamptz expression as RFC 3339 UTC text (NULL stays NULL); sessions run in UTC. -#}
{% macro lake_rfc3339(expression) -%}
    strftime({{ expression }}, '%Y-%m-%dT%H:%M:%S.%fZ')
{%- endmacro %}
