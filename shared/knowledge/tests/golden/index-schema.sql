CREATE INDEX chunks_ann ON chunks ( libsql_vector_idx(embedding, 'metric=cosine', 'compress_neighbors=float8', 'max_neighbors=16') );
CREATE TABLE chunks ( id INTEGER PRIMARY KEY, document TEXT NOT NULL, ordinal INTEGER NOT NULL, page INTEGER, section TEXT, text TEXT NOT NULL, embedding F32_BLOB(4) NOT NULL, UNIQUE (document, ordinal) );
CREATE VIRTUAL TABLE chunks_fts USING fts5( text, section, content = 'chunks', content_rowid = 'id', tokenize = 'porter unicode61' );
CREATE TABLE document_tags ( tag TEXT NOT NULL, document TEXT NOT NULL, PRIMARY KEY (tag, document) ) WITHOUT ROWID;
CREATE TABLE documents ( id TEXT PRIMARY KEY, name TEXT NOT NULL, title TEXT, media_type TEXT NOT NULL ) WITHOUT ROWID;
CREATE TABLE meta ( name TEXT PRIMARY KEY, value TEXT NOT NULL ) WITHOUT ROWID;
CREATE TRIGGER chunks_keywords_on_delete AFTER DELETE ON chunks BEGIN INSERT INTO chunks_fts (chunks_fts, rowid, text, section) VALUES ('delete', OLD.id, OLD.text, OLD.section); END;
CREATE TRIGGER chunks_keywords_on_insert AFTER INSERT ON chunks BEGIN INSERT INTO chunks_fts (rowid, text, section) VALUES (NEW.id, NEW.text, NEW.section); END;
