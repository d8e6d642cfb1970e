{#-
    Run the model for the current window and write its rows as one sorted Parquet
    file per date/shard: <kind>-<run_id>.parquet.tmp beside where it will be published.
    Returns [{date, shard, rows, path}] for lake_call('publish').
    One COPY per shard-day keeps each file sorted by (sensor_id, ts); DuckDB's
    PARTITION_BY writer neither keeps the order nor writes one file per partition.
-#}
{% macro write_lake_window(model_sql, dataset, run_id, kind) %}
    {%- do run_query('create or replace temp table lake_window as ' ~ model_sql) -%}
    {%- set partitions = [] -%}
    {%- for row in run_query("select strftime(date, '%Y-%m-%d') as date, shard from lake_window group by all order by all").rows -%}
        {%- do partitions.append({'date': row['date'], 'shard': row['shard'] | int}) -%}
    {%- endfor -%}
    {%- if partitions -%}
        {%- do lake_call('prepare', dataset=dataset, partitions=partitions) -%}
    {%- endif -%}
    {%- set hot_path = run_query("select getvariable('tslake_hot_path')").rows[0][0] -%}
    {%- set files = [] -%}
    {%- for partition in partitions -%}
        {%- set path = segment_path(hot_path, dataset, partition.date, partition.shard, kind, run_id) -%}
        {%- set copy -%}
            copy (
                select * exclude (date, shard)
                from lake_window
                where date = {{ lake_literal(partition.date) }}::date
                  and shard = {{ partition.shard }}
                order by sensor_id, ts
            ) to {{ lake_literal(path) }} ({{ lake_parquet_options() }})
        {%- endset -%}
        {%- set written = run_query(copy).rows[0][0] | int -%}
        {%- do files.append({'date': partition.date, 'shard': partition.shard, 'rows': written, 'path': path}) -%}
    {%- endfor -%}
    {%- do run_query('drop table lake_window') -%}
    {{ return(files) }}
{% endmacro %}
