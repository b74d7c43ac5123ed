DROP FUNCTION chat_assign_room;
DROP FUNCTION chat_give_room;
DROP FUNCTION chat_candidate;
