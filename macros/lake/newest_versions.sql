{#-
    Keep one row per (sensor_id, ts): the version with the newest inserted_at. Used by the
    lake models (a source without a unique key can repeat a key inside one window) and by
    compaction (versions spread over many files).
-#}
{% macro newest_versions(relation, key=['sensor_id', 'ts'], version_column='inserted_at') %}
    select *
    from {{ relation }}
    qualify row_number() over (
        partition by {{ key | join(', ') }}
        order by {{ version_column }} desc
    ) = 1
{% endmacro %}
