-- Look-alike usernames: each user's username skeleton (`Username::skeleton`: UTS #39, `i` folded
-- into `l`), unique, so a new username that could be taken for an existing one is refused. SQL
-- cannot compute a skeleton: the store fills it at start-up for rows made before this migration,
-- oldest first; where two older usernames share one, the later keeps NULL (NULLs never clash in
-- a unique index) and the server logs it.
ALTER TABLE users ADD COLUMN username_skeleton TEXT;
CREATE UNIQUE INDEX users_username_skeleton ON users (username_skeleton);
