-- public.metrics rows inside the current export window, with the lake's types.
with source as (

    select *
    from {{ postgres_window(
        source('postgres', 'metrics'),
        columns=['sensor_id', 'ts', 'value', 'quality', 'inserted_at'],
    ) }}

),

renamed as (

    select
        sensor_id::varchar as sensor_id,
        ts::timestamptz as ts,
        value::double as value,
        quality,
        inserted_at::timestamptz as inserted_at
    from source

)

select * from renamed
