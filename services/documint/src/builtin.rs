//! The built-in templates: `invoice`, and `usage-receipt` (flag evaluations over a
//! period, for FlagBit's customers). They ship in the binary and are written to the
//! database on first use, as a new version whenever the shipped source changed, so a
//! document records the exact source it was rendered from like any other.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

pub struct Builtin {
    pub id: Uuid,
    pub name: &'static str,
    pub source: &'static str,
    pub sample: fn() -> Value,
}

pub const INVOICE: Builtin = Builtin {
    id: Uuid::from_u128(0x0000_0000_0000_4000_8000_d0c0_0000_0001),
    name: "invoice",
    source: include_str!("../templates/invoice.typ"),
    sample: invoice_sample,
};

pub const USAGE_RECEIPT: Builtin = Builtin {
    id: Uuid::from_u128(0x0000_0000_0000_4000_8000_d0c0_0000_0002),
    name: "usage-receipt",
    source: include_str!("../templates/usage-receipt.typ"),
    sample: usage_receipt_sample,
};

pub const ALL: [Builtin; 2] = [INVOICE, USAGE_RECEIPT];

pub fn is_builtin_name(name: &str) -> bool {
    ALL.iter().any(|b| b.name == name)
}

pub fn invoice_sample() -> Value {
    json!({
        "number": "2026-0001",
        "date": "2026-12-01",
        "due_date": "2026-12-31",
        "currency": "EUR",
        "seller": { "name": "Example GmbH", "address": "Hauptstraße 1\n10115 Berlin" },
        "customer": { "name": "Customer Ltd", "address": "1 Main Street\nDublin" },
        "items": [
            { "description": "Subscription, December", "quantity": 1, "unit_price": 4900 },
            { "description": "Extra seats", "quantity": 3, "unit_price": 990 }
        ]
    })
}

pub fn usage_receipt_sample() -> Value {
    json!({
        "account": "example",
        "period": { "from": "2026-11-01", "to": "2026-11-30" },
        "environments": [
            { "name": "production", "flags": [
                { "key": "new-checkout", "evaluations": 120_431 },
                { "key": "dark-mode", "evaluations": 98_002 }
            ] },
            { "name": "staging", "flags": [ { "key": "new-checkout", "evaluations": 3_120 } ] }
        ]
    })
}

/// Writes each built-in template, or a new version of it when the shipped source differs
/// from the newest stored one. Safe to run from several processes at once.
pub async fn install(pool: &PgPool, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // One installer at a time; the lock ends with the transaction.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('documint.builtins'))")
        .execute(&mut *tx)
        .await?;
    for builtin in ALL {
        let newest: Option<(i32, String)> = sqlx::query_as(
            "SELECT t.version, v.source FROM templates t
             JOIN template_versions v ON v.template_id = t.id AND v.version = t.version
             WHERE t.id = $1",
        )
        .bind(builtin.id)
        .fetch_optional(&mut *tx)
        .await?;
        let version = match newest {
            Some((_, source)) if source == builtin.source => continue,
            Some((version, _)) => version + 1,
            None => {
                sqlx::query(
                    "INSERT INTO templates (id, name, version, builtin, created_at, updated_at)
                     VALUES ($1, $2, 1, true, $3, $3)",
                )
                .bind(builtin.id)
                .bind(builtin.name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                1
            }
        };
        sqlx::query(
            "INSERT INTO template_versions
                 (template_id, version, source, sample_data, options, created_at)
             VALUES ($1, $2, $3, $4, '{}', $5)",
        )
        .bind(builtin.id)
        .bind(version)
        .bind(builtin.source)
        .bind((builtin.sample)())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE templates SET version = $2, updated_at = $3 WHERE id = $1")
            .bind(builtin.id)
            .bind(version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
