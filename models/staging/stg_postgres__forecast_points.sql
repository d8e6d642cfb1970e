-- public.forecast_points rows inside the current export window, with the lake's types.
with source as (

    select *
    from {{ postgres_window(
        source('postgres', 'forecast_points'),
        columns=['series_id', 'issued_at', 'ts', 'value', 'inserted_at'],
        series_column='series_id',
    ) }}

),

renamed as (

    select
        series_id::varchar as series_id,
        issued_at::timestamptz as issued_at,
        ts::timestamptz as ts,
        value::double as value,
        inserted_at::timestamptz as inserted_at
    from source

)

select * from renamed
