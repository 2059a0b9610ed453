-- Usage receipts: one per calendar month, rendered as a PDF by DocuMint. The unique period
-- is what keeps a retried or repeated request from producing a second receipt.

CREATE TABLE receipts (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The first instant of the month and of the next one, UTC.
    period_start timestamptz NOT NULL UNIQUE,
    period_end   timestamptz NOT NULL CHECK (period_end > period_start),
    -- queued: waiting for (or between) attempts; done: the PDF is stored; failed: every
    -- attempt failed, kept for inspection until asked for again.
    status       text        NOT NULL DEFAULT 'queued'
                             CHECK (status IN ('queued', 'done', 'failed')),
    -- How it was asked for: 'schedule' or 'api'.
    requested_by text        NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    -- Per environment and flag, as sent to DocuMint; set with the PDF.
    totals       jsonb,
    pdf          bytea,
    pdf_sha256   text,
    created_at   timestamptz NOT NULL,
    completed_at timestamptz
);
