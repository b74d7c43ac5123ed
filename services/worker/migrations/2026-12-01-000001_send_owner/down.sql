ALTER TABLE sent_emails
    DROP COLUMN send_started_at,
    DROP COLUMN owner_key;
