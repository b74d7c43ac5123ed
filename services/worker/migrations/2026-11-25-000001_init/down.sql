DROP TABLE sent_emails;
DROP TABLE processed_messages;
DROP TABLE outbox;
