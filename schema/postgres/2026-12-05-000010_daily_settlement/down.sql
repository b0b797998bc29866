DROP TABLE charged_lines;
DROP TABLE daily_totals;
DROP TABLE daily_settlement;
DROP TABLE debt_ledger;
