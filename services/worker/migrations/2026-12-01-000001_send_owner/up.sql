-- Who is sending, and whether the send itself began. `owner_key` is the
-- advisory lock a worker process holds for its lifetime: free means the
-- owner is gone. `send_started_at` is written just before the SMTP
-- transaction: a claim whose owner died without it provably never reached
-- the server and is sent again at once; one with it has an unknown outcome.
ALTER TABLE sent_emails
    ADD COLUMN owner_key BIGINT,
    ADD COLUMN send_started_at TIMESTAMPTZ;
-- Before this migration a claim was the start of the send.
UPDATE sent_emails SET send_started_at = started_at WHERE sent_at IS NULL;
