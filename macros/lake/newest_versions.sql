{#-
    Keep one row per key (sensor_id, ts): the version with the newest inserted_at. Used by
    the lake models (a source without a unique key can repeat a key inside one window) and
    by compaction (versions spread over many files).
    Rows are windowed per series (the key's leading columns) in (time, version desc) order
    and a row is kept when its time differs from the previous row's: the first, newest
    version of each key, whole. Unlike row_number() over one partition per key, this keeps
    few, large window partitions, so DuckDB spills them within its memory_limit.
-#}
{% macro newest_versions(relation, key, version_column) %}
    {%- for name in key + [version_column] -%}
        {%- if not modules.re.match('^[a-z_][a-z0-9_]*$', name) -%}
            {{ exceptions.raise_compiler_error("newest_versions: column '" ~ name ~ "' must be a lowercase identifier (letters, digits, _)") }}
        {%- endif -%}
    {%- endfor -%}
    {%- if key | length < 1 -%}
        {{ exceptions.raise_compiler_error("newest_versions: key must name at least one column, like ['sensor_id', 'ts']") }}
    {%- endif -%}
    {%- set time = key[-1] -%}
    select *
    from {{ relation }}
    qualify {{ time }} is distinct from lag({{ time }}) over (
        {% if key | length > 1 -%} partition by {{ key[:-1] | join(', ') }} {%- endif %}
        order by {{ time }}, {{ version_column }} desc
    )
{% endmacro %}
