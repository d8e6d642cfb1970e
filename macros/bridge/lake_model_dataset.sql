{#- The `meta.dataset` of the lake_dataset model a generic test is attached to. -#}
{% macro lake_model_dataset(model) %}
    {%- set nodes = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model') | selectattr('name', 'equalto', model.identifier) | list -%}
    {%- set meta = (nodes[0].config.meta if nodes else {}) or {} -%}
    {%- if not meta.get('dataset') -%}
        {{ exceptions.raise_compiler_error("lake tests apply to lake_dataset models with meta.dataset; " ~ model.identifier ~ " has none") }}
    {%- endif -%}
    {{ return(meta['dataset']) }}
{% endmacro %}
