{#-
    Where a staged file goes: <hot>/<dataset>/date=YYYY-MM-DD/shard=NN/<kind>-<run_id>.parquet.tmp
    The runner checks it is exactly the path it will rename (runner/core/publish.py segment_path).
-#}
{% macro segment_path(hot_path, dataset, date, shard, kind, run_id) -%}
    {{ hot_path }}/{{ dataset }}/date={{ date }}/shard={{ '%02d' | format(shard | int) }}/{{ kind }}-{{ run_id }}.parquet.tmp
{%- endmacro %}
