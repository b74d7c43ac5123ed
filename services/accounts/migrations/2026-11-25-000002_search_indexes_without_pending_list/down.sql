ALTER INDEX profiles_email_trgm RESET (fastupdate);
ALTER INDEX profiles_name_trgm RESET (fastupdate);
