-- DocuMint: templates (versioned), documents, and their PDFs.

-- A template's identity. Its content lives in versions; `version` is the newest.
-- Deleting a template hides it (deleted_at) but keeps its versions, so documents already
-- queued still render and finished ones still say what they were made from.
CREATE TABLE templates (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    version     integer     NOT NULL CHECK (version > 0),
    builtin     boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX templates_live_name ON templates (name) WHERE deleted_at IS NULL;

CREATE TABLE template_versions (
    template_id  uuid        NOT NULL REFERENCES templates (id),
    version      integer     NOT NULL CHECK (version > 0),
    source       text        NOT NULL,
    sample_data  jsonb,
    options      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (template_id, version)
);

CREATE TABLE documents (
    id               uuid PRIMARY KEY,
    -- Newest first in lists; the cursor is this number.
    seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    template_id      uuid        NOT NULL,
    template_version integer     NOT NULL,
    status           text        NOT NULL
                     CHECK (status IN ('queued', 'rendering', 'done', 'failed')),
    data             jsonb       NOT NULL,
    file_name        text        NOT NULL,
    metadata         jsonb       NOT NULL,
    webhook_url      text,
    webhook_status   text,
    idempotency_key  text UNIQUE,
    request_hash     text,
    -- SHA-256 of the template version and the data: the PDF's identifier, so the same
    -- input gives the same bytes.
    content_hash     text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    -- Why the last attempt failed (code, message, template positions), when it did.
    error            jsonb,
    warnings         jsonb       NOT NULL DEFAULT '[]',
    pages            integer,
    pdf_size         integer,
    pdf_sha256       text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    rendered_at      timestamptz,
    FOREIGN KEY (template_id, template_version) REFERENCES template_versions (template_id, version)
);

-- The PDF apart from the document's row, so listing documents never reads PDFs.
CREATE TABLE document_pdfs (
    document_id  uuid PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    pdf          bytea NOT NULL
);
