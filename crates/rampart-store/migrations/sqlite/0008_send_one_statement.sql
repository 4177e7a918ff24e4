-- A send is one statement again: the message row carries its search postings (`index_tokens`,
-- the 12-byte tokens end to end) into the INSERT, and a trigger spreads them into `search_index`
-- and clears the column, all inside that statement. Before, a send was a transaction of four
-- round trips to the database thread (begin, insert, postings, commit) holding SQLite's one write
-- lock throughout, which capped sends into a busy room near 250 a second.
--
-- Triggers cannot use a recursive WITH, so the token positions come from `token_slots`, a table
-- of the numbers 0 … 4095 (a message with more tokens takes the transaction path).
ALTER TABLE messages ADD COLUMN index_tokens BLOB;

CREATE TABLE token_slots (n INTEGER PRIMARY KEY NOT NULL) STRICT;
WITH RECURSIVE slot (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM slot WHERE n < 4095)
INSERT INTO token_slots (n) SELECT n FROM slot;

CREATE TRIGGER messages_indexed AFTER INSERT ON messages WHEN NEW.index_tokens IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO search_index (token, message_rowid)
        SELECT substr(NEW.index_tokens, n * 12 + 1, 12), NEW.rowid FROM token_slots
        WHERE n < length(NEW.index_tokens) / 12;
    UPDATE messages SET index_tokens = NULL WHERE rowid = NEW.rowid;
END;
