DROP TABLE bill_cases;
DROP TABLE bill_rows;
DROP TABLE bill_files;
DROP TABLE reconcile_runs;
