"""sessionlake: date-partitioned user events -> sessions and APS/SPU KPIs as Delta tables."""
