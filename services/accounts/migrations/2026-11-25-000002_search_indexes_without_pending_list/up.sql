-- GIN's fast update parks new entries in an unsorted pending list that every
-- search scans in full until (auto)vacuum merges it: after a burst of
-- registrations a directory search read ~270 index pages instead of ~50
-- and took 4-7 ms instead of ~1 ms at 100k users. Profiles are written
-- rarely and searched often, so new entries go straight into the index.
ALTER INDEX profiles_email_trgm SET (fastupdate = off);
ALTER INDEX profiles_name_trgm SET (fastupdate = off);
-- Merge whatever is pending now (the list is flushed by vacuum; an index
-- without fast update never grows one again).
SELECT gin_clean_pending_list('profiles_email_trgm'::regclass);
SELECT gin_clean_pending_list('profiles_name_trgm'::regclass);
