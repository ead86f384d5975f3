//! One customer-key secret per warehouse.
//!
//! A customer key is an HMAC of the name under a secret: two secrets give
//! the same customer two keys, and a batch without a secret gives none, so
//! the new-and-returning view would count one person twice or not at all.
//! Every batch records which secret made its keys
//! ([`crate::clean::customer_key_id`], or `none`), the ledger keeps it, and
//! a load whose batches do not match the warehouse's key id is refused as a
//! whole, with the command that restages them. No row's key is ever
//! rewritten: the load's `MERGE` leaves a loaded transaction's key alone.

use super::schema::LEDGER_TABLE;
use super::{Batch, Error, Phase};
use crate::clean::NO_CUSTOMER_KEY;
use std::collections::BTreeSet;

/// Batches named in a refusal; the rest are counted.
const NAMED: usize = 5;

/// The query giving the warehouse's loaded key ids for [`check`]: one
/// column, `customer_key_id`, one row per distinct id of the ledger
/// (`none` included; batches loaded before the column existed are left
/// out). The same text for both dialects; `cafe-etl load` and the worker's
/// consumer (through wasm) both run it, so the rule has one input.
pub fn loaded_key_ids_query() -> String {
    format!("SELECT DISTINCT customer_key_id FROM {LEDGER_TABLE} WHERE customer_key_id IS NOT NULL")
}

/// Checks that the planned batches may join a warehouse whose ledger holds
/// `loaded` key ids (one per loaded batch, or the distinct ones; `none` and
/// unknown ids of batches loaded before the column existed are ignored).
///
/// The warehouse's key id is the one of its loaded keyed batches or, in an
/// empty or key-less warehouse, the one of the planned keyed batches. A
/// planned batch with another key id, or with none once there is one, is
/// refused, with `phase` (`load`, or `plan` for an offline Redshift plan).
pub fn check(loaded: &[String], planned: &[Batch], phase: Phase) -> Result<(), Error> {
    let in_warehouse = keyed(loaded.iter().map(String::as_str));
    let in_plan = keyed(planned.iter().map(|b| b.report.customer_key_id.as_str()));
    let restage = "restage them with the warehouse's secret (the worker's CUSTOMER_KEY_SECRET): \
                   `CUSTOMER_KEY_SECRET=... cafe-etl transform --restage --customer-key-secret-env \
                   CUSTOMER_KEY_SECRET --out ROOT FILE...`, then load again; nothing was loaded";
    let target = match (in_warehouse.len(), in_plan.len()) {
        (1, _) => in_warehouse.into_iter().next(),
        (0, 0) => return Ok(()),
        (0, 1) => in_plan.into_iter().next(),
        (0, n) => {
            return Err(mixed(Error::new(
                phase,
                format!(
                    "the batches to load were staged with {n} different customer-key secrets \
                     (key ids {}): one customer would count as several; {restage}",
                    in_plan.into_iter().collect::<Vec<_>>().join(", ")
                ),
            )))
        }
        (n, _) => {
            return Err(mixed(Error::new(
                phase,
                format!(
                "the warehouse already holds customer keys of {n} different secrets (key ids {}); \
                     it accepts one: reload it from batches restaged with one secret",
                in_warehouse.into_iter().collect::<Vec<_>>().join(", ")
            ),
            )))
        }
    };
    let target = target.expect("one key id");
    let wrong: Vec<&Batch> = planned
        .iter()
        .filter(|b| b.report.customer_key_id != target)
        .collect();
    if wrong.is_empty() {
        return Ok(());
    }
    let mut named: Vec<String> = wrong
        .iter()
        .take(NAMED)
        .map(|b| {
            let source: String = b
                .report
                .source
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            let made = match b.report.customer_key_id.as_str() {
                NO_CUSTOMER_KEY | "" => "without a customer-key secret".to_string(),
                other => format!("with key id {other}"),
            };
            format!("{} ({source}) staged {made}", b.id())
        })
        .collect();
    if wrong.len() > NAMED {
        named.push(format!("and {} more", wrong.len() - NAMED));
    }
    let batches = if wrong.len() == 1 { "batch" } else { "batches" };
    Err(mixed(Error::new(
        phase,
        format!(
            "the warehouse's customer keys have key id {target}, so {} {batches} cannot join it: {}; \
             {restage}",
            wrong.len(),
            named.join(", ")
        ),
    )))
}

/// The code of every refusal here.
fn mixed(e: Error) -> Error {
    e.with_code("mixed_customer_keys")
}

/// The key ids that are keys: not `none`, not unknown.
fn keyed<'a>(ids: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    ids.filter(|k| *k != NO_CUSTOMER_KEY && !k.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Report;

    fn batch(id: char, key: &str) -> Batch {
        Batch {
            report: Report {
                batch_id: id.to_string().repeat(32),
                source: format!("{id}.csv"),
                customer_key_id: key.to_string(),
                ..Report::default()
            },
            staged_at_ms: 0,
            sizes: None,
        }
    }

    #[test]
    fn one_key_id_per_warehouse() {
        let (k, j) = ("0123456789abcdef", "fedcba9876543210");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // What a refusal tells to do: restage the batches, or (keys of two
        // secrets already loaded) reload the warehouse.
        let (restage, reload) = (
            "cafe-etl transform --restage",
            "reload it from batches restaged",
        );
        // (ledger's key ids, planned batches, refusal: (what it says, the remedy))
        for (loaded, planned, refused) in [
            // Empty warehouse: keyless, or one key, or keys with keyless (the
            // keyless ones would have no key in a keyed warehouse).
            (s(&[]), vec![batch('a', "none"), batch('b', "none")], None),
            (s(&[]), vec![batch('a', k), batch('b', k)], None),
            (
                s(&[]),
                vec![batch('a', k), batch('b', "none")],
                Some(("1 batch cannot join", restage)),
            ),
            (
                s(&[]),
                vec![batch('a', k), batch('b', j)],
                Some(("2 different customer-key secrets", restage)),
            ),
            // A keyed warehouse takes its own key only.
            (s(&[k, "none"]), vec![batch('a', k)], None),
            (
                s(&[k]),
                vec![batch('a', j)],
                Some(("with key id fedcba9876543210", restage)),
            ),
            (
                s(&[k]),
                vec![batch('a', "none")],
                Some(("staged without a customer-key secret", restage)),
            ),
            // A keyless warehouse (old ledger rows too) takes the first key.
            (s(&["none", ""]), vec![batch('a', j)], None),
            (
                s(&[k, j]),
                vec![batch('a', k)],
                Some(("2 different secrets", reload)),
            ),
        ] {
            match (check(&loaded, &planned, Phase::Load), refused) {
                (Ok(()), None) => {}
                (Err(e), Some((want, remedy))) => {
                    let msg = e.to_string();
                    assert!(msg.contains(want), "{msg}");
                    assert!(msg.starts_with("load error: "), "{msg}");
                    assert_eq!(e.code(), Some("mixed_customer_keys"));
                    assert!(msg.contains(remedy), "{msg}");
                }
                (got, want) => panic!("{loaded:?} {planned:?}: {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn a_refusal_names_at_most_five_batches() {
        let planned: Vec<Batch> = "abcdefg".chars().map(|c| batch(c, "none")).collect();
        let e = check(&["0123456789abcdef".into()], &planned, Phase::Plan).unwrap_err();
        assert!(e.to_string().starts_with("plan error: "));
        assert!(e.message().contains("7 batches cannot join"));
        assert!(e.message().contains("e.csv") && !e.message().contains("f.csv"));
        assert!(e.message().contains("and 2 more"));
    }
}
