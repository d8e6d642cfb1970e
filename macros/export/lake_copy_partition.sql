{#-
    The COPY of one date/shard of the window the runner staged in temp table `relation`
    (a tick's or a repair day's rows, with `date` and `shard` columns) into `path`
    (a <kind>-<run_id>.parquet.tmp), sorted by the key. One COPY per shard-day keeps each
    file sorted; DuckDB's PARTITION_BY writer neither keeps the order nor writes one file
    per partition. Returns the rows written.
-#}
{% macro lake_copy_partition(relation, date, shard, key, path) %}
    copy (
        select * exclude (date, shard)
        from {{ relation }}
        where date = {{ lake_literal(date) }}::date
          and shard = {{ shard | int }}
        order by {{ key | join(', ') }}
    ) to {{ lake_literal(path) }} ({{ lake_parquet_options() }})
{% endmacro %}
