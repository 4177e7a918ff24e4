-- A new message takes its channel's next seq and writes its `message.created` event (and bumps
-- its thread parent's reply count) in the same statement, through this trigger: the hot send
-- path is one statement holding SQLite's write lock, not five round trips.
CREATE TRIGGER messages_created AFTER INSERT ON messages
BEGIN
    UPDATE channels SET last_seq = NEW.seq WHERE id = NEW.channel_id;
    INSERT INTO events (channel_id, seq, kind, message_id, user_id, at)
        VALUES (NEW.channel_id, NEW.seq, 'message.created', NEW.id, NULL, NEW.created_at);
    UPDATE messages SET reply_count = reply_count + 1 WHERE NEW.thread_id IS NOT NULL AND id = NEW.thread_id;
END;
