//! CPU cost of one evaluation of a flag with five targeting rules, the engine alone (no
//! HTTP, no JSON parsing of the request): the target is under 5 µs.
//!
//! `cargo run --release -p flagbit --example eval_bench [ITERATIONS]`
//!
//! The rules are tried in order, so a context matching none of them (the last case) is
//! the most expensive path: all five conditions are evaluated, then the default is served.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use flagbit::eval;
use flagbit::model::FlagSet;
use serde_json::{Map, Value, json};

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map_or(200_000, |n| n.parse().expect("ITERATIONS is a number"));
    let file = json!({
        "$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@example.com"]}},
        "flags": {"checkout": {
            "state": "ENABLED",
            "variants": {"a": "v1", "b": "v2", "c": "v3", "d": "v4", "e": "v5", "off": "v0"},
            "defaultVariant": "off",
            "targeting": {"if": [
                {"$ref": "staff"}, "a",
                {"sem_ver": [{"var": "app.version"}, ">=", "5.0.0"]}, "b",
                {"in": [{"var": "country"}, ["DE", "FR", "NL", "BE", "AT"]]}, "c",
                {"and": [{"==": [{"var": "plan"}, "enterprise"]}, {">": [{"var": "seats"}, 100]}]},
                "d",
                {"starts_with": [{"var": "targetingKey"}, "beta-"]},
                {"fractional": [["e", 50], ["off", 50]]},
                null
            ]}
        }}
    });
    let (set, problems) = FlagSet::from_json(&file).unwrap();
    assert!(problems.is_empty(), "{problems:?}");

    let contexts: Vec<(&str, Map<String, Value>)> = [
        (
            "rule 1 matches",
            json!({"targetingKey": "u1", "email": "ann@example.com"}),
        ),
        (
            "rule 3 matches",
            json!({"targetingKey": "u2", "email": "bob@shop.test",
            "app": {"version": "4.2.0"}, "country": "NL"}),
        ),
        (
            "rule 5 (fractional)",
            json!({"targetingKey": "beta-42", "email": "c@shop.test",
            "app": {"version": "4.0.0"}, "country": "US", "plan": "pro", "seats": 3}),
        ),
        (
            "no rule matches",
            json!({"targetingKey": "u4", "email": "d@shop.test",
            "app": {"version": "4.9.1"}, "country": "US", "plan": "enterprise", "seats": 20}),
        ),
    ]
    .into_iter()
    .map(|(name, c)| (name, c.as_object().unwrap().clone()))
    .collect();

    println!("| context | variant | ns per evaluation |");
    println!("|---|---|---|");
    for (name, ctx) in &contexts {
        let r = eval::evaluate(&set, "checkout", ctx, 1_700_000_000);
        // Warm up, then time.
        for _ in 0..iterations / 10 {
            black_box(eval::evaluate(
                &set,
                black_box("checkout"),
                black_box(ctx),
                0,
            ));
        }
        let started = Instant::now();
        for _ in 0..iterations {
            black_box(eval::evaluate(
                &set,
                black_box("checkout"),
                black_box(ctx),
                0,
            ));
        }
        let ns = started.elapsed().as_nanos() as f64 / f64::from(iterations);
        println!("| {name} | {} | {ns:.0} |", r.variant.unwrap_or_default());
    }
}
