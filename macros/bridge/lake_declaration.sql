{#-
    The dataset declaration of a lake model (its yml's config.meta, see
    models/lake/_lake__models.yml): {dataset, source, key, series, time, version}.
    Without `meta`, the current model's; the runner validates declarations before any
    SQL runs (runner/core/datasets.py), this only checks the keys it hands out are there.
-#}
{% macro lake_declaration(meta=none) %}
    {%- set meta = meta if meta is not none else (config.get('meta') or {}) -%}
    {%- if not execute -%}
        {#- At parse time the yml's meta is not applied yet: placeholders, never run. -#}
        {{ return({'dataset': meta.get('dataset', 'unparsed/v0'), 'key': meta.get('key') or ['parse_key'],
                   'series': meta.get('series') or 'parse_series', 'time': meta.get('time') or 'parse_time',
                   'version': meta.get('version') or 'parse_version'}) }}
    {%- endif -%}
    {%- for name in ['dataset', 'key', 'series', 'time', 'version'] -%}
        {%- if not meta.get(name) -%}
            {{ exceptions.raise_compiler_error("lake_declaration: the lake model's config.meta has no '" ~ name ~ "': declare dataset, source, key, series, time and version (models/lake/_lake__models.yml)") }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(meta) }}
{% endmacro %}
