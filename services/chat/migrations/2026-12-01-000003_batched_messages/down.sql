DROP FUNCTION chat_store_messages;
