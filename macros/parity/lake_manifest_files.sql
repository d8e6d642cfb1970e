{#-
    dbt only (`dbt test` cannot call Python; `tslake parity` builds the same list from the
    typed manifest, runner/ops/parity.committed_files): every file the committed manifest lists for `dataset`: date, shard, location, row count,
    its full path (hot or cold root), how many files its shard-day has, and whether it is on
    disk. Reads `getvariable('tslake_manifest_path')`; `with_cold` globs the cold root too.
-#}
{% macro lake_manifest_files(dataset, with_cold=false) %}
    {%- if not modules.re.match('^[a-z][a-z0-9_]*(/[a-z0-9_]+)*$', dataset | string) -%}
        {{ exceptions.raise_compiler_error("lake_manifest_files: dataset '" ~ dataset ~ "' is not like metrics/v1") }}
    {%- endif -%}
    with entry as (
        select content::json -> 'datasets' -> {{ lake_literal(dataset) }} as entry
        from read_text(getvariable('tslake_manifest_path'))
    ),
    partitions as (
        select p.key as date, p.value as part
        from entry, json_each(entry.entry -> 'partitions') as p
    ),
    files as (
        select
            date,
            (f.value ->> 'shard')::integer as shard,
            part ->> 'location' as location,
            (f.value ->> 'rows')::bigint as row_count,
            case part ->> 'location'
                when 'cold' then getvariable('tslake_cold_path')
                else getvariable('tslake_hot_path')
            end || '/' || {{ lake_literal(dataset) }} || '/' || (f.value ->> 'path') as path
        from partitions, json_each(part -> 'files') as f
    ),
    on_disk as (
        select file from glob(getvariable('tslake_hot_path') || '/' || {{ lake_literal(dataset) }} || '/date=*/shard=*/*.parquet')
        {%- if with_cold %}
        union all
        select file from glob(getvariable('tslake_cold_path') || '/' || {{ lake_literal(dataset) }} || '/date=*/shard=*/*.parquet')
        {%- endif %}
    )
    select
        files.*,
        count(*) over (partition by files.date, files.shard) as files_in_shard_day,
        on_disk.file is not null as on_disk
    from files
    left join on_disk on on_disk.file = files.path
    order by files.date, files.shard, files.path
{% endmacro %}
