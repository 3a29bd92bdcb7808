-- The portal's language setting per user (NULL: the browser's Accept-Language).
ALTER TABLE users ADD COLUMN language TEXT;
