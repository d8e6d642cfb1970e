"""`make bench`: throughput, memory and tick cost of tslake against a throwaway Postgres."""
