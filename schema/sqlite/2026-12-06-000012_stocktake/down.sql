DROP TABLE stock_findings;
DROP TABLE stocktake_lanes;
