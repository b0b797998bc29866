DROP INDEX stock_ledger_sn_created;
DROP INDEX orders_session;
DROP TABLE stock_findings;
DROP TABLE stocktake_lanes;
