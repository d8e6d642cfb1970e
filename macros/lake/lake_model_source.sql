{#-
    The Postgres table a lake model reads, found through the graph (lake model -> staging
    model -> source), as {'schema': ..., 'table': ...}. Recorded in the manifest so readers
    (metrics_fresh) and parity know where the dataset comes from.
-#}
{% macro lake_model_source() %}
    {%- set found = [] -%}
    {%- for parent_id in model.depends_on.nodes -%}
        {%- set parent = graph.nodes.get(parent_id) -%}
        {%- for source_id in (parent.depends_on.nodes if parent else [parent_id]) -%}
            {%- if source_id.startswith('source.') -%}
                {%- set source_node = graph.sources[source_id] -%}
                {%- do found.append({'schema': source_node.schema, 'table': source_node.identifier}) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- if found | length != 1 -%}
        {{ exceptions.raise_compiler_error("lake model " ~ model.name ~ " must read exactly one source table through its staging model, found " ~ found | length) }}
    {%- endif -%}
    {{ return(found[0]) }}
{% endmacro %}
