DROP TABLE profiles;
DROP TABLE processed_messages;
DROP TABLE outbox;
