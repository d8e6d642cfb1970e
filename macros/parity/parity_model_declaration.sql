{#-
    dbt only: the dataset declaration of the lake_dataset model a generic test is attached
    to, in the form the parity macros take (parity_check_declaration), from the model's
    config.meta and its columns' data_type (models/lake/_lake__models.yml), plus `dataset`
    and `source` (<dbt source>.<table>).
-#}
{% macro parity_model_declaration(model) %}
    {%- set nodes = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model') | selectattr('name', 'equalto', model.identifier) | list -%}
    {%- if not nodes -%}
        {{ exceptions.raise_compiler_error("parity_model_declaration: no model " ~ model.identifier ~ " in the project") }}
    {%- endif -%}
    {%- set meta = nodes[0].config.meta or {} -%}
    {%- if not meta.get('dataset') -%}
        {{ exceptions.raise_compiler_error("lake tests apply to lake_dataset models with meta.dataset; " ~ model.identifier ~ " has none") }}
    {%- endif -%}
    {%- set columns = [] -%}
    {%- for name, column in nodes[0].columns.items() if column.get('data_type') -%}
        {%- do columns.append([name, column.get('data_type')]) -%}
    {%- endfor -%}
    {%- set declaration = {'dataset': meta.get('dataset'), 'source': meta.get('source'), 'key': meta.get('key') or [],
                           'series': meta.get('series'), 'time': meta.get('time'), 'version': meta.get('version'),
                           'columns': columns} -%}
    {{- parity_check_declaration(declaration, 'parity_model_declaration (' ~ model.identifier ~ ')') -}}
    {{ return(declaration) }}
{% endmacro %}
