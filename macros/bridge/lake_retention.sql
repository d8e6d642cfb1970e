{#-
    The lake models' post-hook (dbt_project.yml): after the run's commits, move partitions
    older than TSLAKE_HOT_RETENTION_DAYS to the cold tier, or delete them without one
    (runner/ops/retention.py). Renders no SQL; best effort: a failure is logged as a warning.
-#}
{% macro lake_retention() %}
    {%- if execute -%}
        {%- set dataset = (config.get('meta') or {}).get('dataset') -%}
        {%- if not dataset -%}
            {{ exceptions.raise_compiler_error("lake_retention: model " ~ this.identifier ~ " has no meta.dataset; it is a post-hook for lake_dataset models only") }}
        {%- endif -%}
        {%- do lake_call('retention', dataset=dataset) -%}
    {%- endif -%}
{% endmacro %}
