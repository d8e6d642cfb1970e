{#-
    The shard of a sensor (README, "Reading the lake"): int(md5(sensor_id)[:8], 16) % shards, so any
    program can find a sensor's file.
-#}
{% macro shard_of(sensor_id, shards="getvariable('tslake_shards')") -%}
    (('0x' || left(md5({{ sensor_id }}), 8))::ubigint % {{ shards }})::integer
{%- endmacro %}
