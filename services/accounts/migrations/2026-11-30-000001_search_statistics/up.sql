-- The planner estimates `lower(email) LIKE '%...%'` from the histogram of
-- the indexed expression: a pattern that matches one of its ~100 entries is
-- taken to match 1 % of the directory. At 100k users it then walked the
-- primary key filtering every row (170 ms alone, over a second under load)
-- instead of asking the trigram index (under 1 ms). A histogram of 1,000
-- entries puts such a pattern at 0.1 %, where the index wins.
ALTER INDEX profiles_email_trgm ALTER COLUMN 1 SET STATISTICS 1000;
ALTER INDEX profiles_name_trgm ALTER COLUMN 1 SET STATISTICS 1000;
-- The next migration analyzes with the new target: in this transaction
-- ANALYZE would still use the old one (seen in a test).
