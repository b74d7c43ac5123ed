DROP TABLE login_throttle;
DROP TABLE signing_keys;
DROP TABLE one_time_tokens;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE users;
DROP TABLE processed_messages;
DROP TABLE outbox;
