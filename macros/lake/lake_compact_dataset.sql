{#-
    Compact one dataset (SPEC section 5), the lake already opened (locked, leftovers gone):
    every hot shard-day with more than `min_files` committed files (default
    TSLAKE_COMPACT_MIN_FILES; only `date` if given) becomes one compact-<run_id>.parquet.
    Each shard-day is one COPY and one manifest commit that adds the compact file and
    drops its inputs; the runner deletes the inputs after that commit. Returns the number
    of shard-days compacted.
-#}
{% macro lake_compact_dataset(dataset, run_id, min_files=none, date=none) %}
    {%- if min_files is none -%}
        {%- set min_files = run_query("select getvariable('tslake_compact_min_files')").rows[0][0] | int -%}
    {%- endif -%}
    {%- set shard_days = compaction_candidates(dataset, min_files, date) -%}
    {%- set ns = namespace(generation=lake_state(dataset)['generation']) -%}
    {%- set hot_path = run_query("select getvariable('tslake_hot_path')").rows[0][0] -%}
    {%- for shard_day in shard_days -%}
        {%- set where = dataset ~ ": date=" ~ shard_day.date ~ " shard=" ~ '%02d' | format(shard_day.shard) -%}
        {{ log("tslake: " ~ where ~ ": compacting " ~ shard_day.paths | length ~ " files, " ~ shard_day.rows ~ " rows (" ~ loop.index ~ "/" ~ shard_days | length ~ ")", info=True) }}
        {%- set started = modules.datetime.datetime.now() -%}
        {%- set rows = write_compacted_shard_day(dataset, shard_day.date, shard_day.shard, shard_day.paths, run_id) -%}
        {%- set file = {'date': shard_day.date, 'shard': shard_day.shard, 'rows': rows,
                        'path': segment_path(hot_path, dataset, shard_day.date, shard_day.shard, 'compact', run_id)} -%}
        {%- do lake_call('publish', dataset=dataset, run_id=run_id, generation=ns.generation,
                         kind='compact', files=[file], watermark=none, replace_files=shard_day.paths,
                         run_info={'mode': 'compact', 'date': shard_day.date, 'shard': shard_day.shard}) -%}
        {%- set ns.generation = ns.generation + 1 -%}
        {{ log("tslake: " ~ where ~ ": compacted into compact-" ~ run_id ~ ".parquet, " ~ shard_day.rows ~ " -> " ~ rows ~ " rows in " ~ '%.2f' | format((modules.datetime.datetime.now() - started).total_seconds()) ~ " s", info=True) }}
    {%- endfor -%}
    {{ return(shard_days | length) }}
{% endmacro %}
