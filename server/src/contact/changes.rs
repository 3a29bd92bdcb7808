//! The change log every server process follows: each write that can alter
//! some terminal's target records the scope it touches, in the same
//! transaction; every process polls the log and forgets the cached targets of
//! that scope. The database stays the source of truth; the caches only
//! remember what it said.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::db::schema::{contact_changes, contact_sequence};
use crate::db::{DbConnection, DbError};
use crate::time::now;

/// What a change touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every terminal (a global parameter, a release withdrawn, a group).
    Everyone,
    Merchant(i64),
    Location(i64),
    Device(i64),
    /// The set of deployments and rollouts: every process reloads it.
    Deployments,
    /// The answer-signing keys.
    Keys,
}

impl Scope {
    fn parts(self) -> (&'static str, i64) {
        match self {
            Scope::Everyone => ("everyone", 0),
            Scope::Merchant(id) => ("merchant", id),
            Scope::Location(id) => ("location", id),
            Scope::Device(id) => ("device", id),
            Scope::Deployments => ("deployments", 0),
            Scope::Keys => ("keys", 0),
        }
    }

    fn from_parts(scope: &str, id: i64) -> Option<Scope> {
        Some(match scope {
            "everyone" => Scope::Everyone,
            "merchant" => Scope::Merchant(id),
            "location" => Scope::Location(id),
            "device" => Scope::Device(id),
            "deployments" => Scope::Deployments,
            "keys" => Scope::Keys,
            _ => return None,
        })
    }
}

/// Records changes; call inside the write transaction that makes them. The
/// sequence row is locked until that transaction ends, so sequence numbers
/// are handed out in commit order.
pub fn record(conn: &mut DbConnection, scopes: &[Scope]) -> Result<(), DbError> {
    if scopes.is_empty() {
        return Ok(());
    }
    diesel::update(contact_sequence::table.find(1))
        .set(contact_sequence::seq.eq(contact_sequence::seq + scopes.len() as i64))
        .execute(conn)?;
    let last: i64 = contact_sequence::table.find(1).select(contact_sequence::seq).first(conn)?;
    let at = now();
    let first = last - scopes.len() as i64 + 1;
    for (i, scope) in scopes.iter().enumerate() {
        let (name, id) = scope.parts();
        diesel::insert_into(contact_changes::table)
            .values((
                contact_changes::seq.eq(first + i as i64),
                contact_changes::scope.eq(name),
                contact_changes::scope_id.eq(id),
                contact_changes::created_at.eq(at),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// The highest sequence number handed out so far.
pub fn current(conn: &mut DbConnection) -> Result<i64, DbError> {
    Ok(contact_sequence::table.find(1).select(contact_sequence::seq).first(conn)?)
}

/// Changes after `after`, oldest first.
pub fn since(conn: &mut DbConnection, after: i64, limit: i64) -> Result<Vec<(i64, Scope)>, DbError> {
    let rows: Vec<(i64, String, i64)> = contact_changes::table
        .filter(contact_changes::seq.gt(after))
        .order(contact_changes::seq)
        .limit(limit)
        .select((contact_changes::seq, contact_changes::scope, contact_changes::scope_id))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(seq, s, id)| Scope::from_parts(&s, id).map(|scope| (seq, scope)))
        .collect())
}

/// Forgets changes every process has long seen.
pub fn prune(conn: &mut DbConnection, older_than: chrono::Duration) -> Result<usize, DbError> {
    let keep_from = now() - older_than;
    let last = current(conn)?;
    Ok(diesel::delete(
        contact_changes::table
            .filter(contact_changes::created_at.lt(keep_from))
            .filter(contact_changes::seq.lt(last)),
    )
    .execute(conn)?)
}

/// What one process has seen of the log: per scope, the sequence number of
/// the last change to it. A target computed when the process had seen up
/// to `n` still holds while no scope it depends on changed after `n`.
#[derive(Debug, Default)]
pub struct Seen {
    pub last: i64,
    everyone: i64,
    /// The last change to the set of deployments and rollouts.
    deployments: i64,
    merchants: HashMap<i64, i64>,
    locations: HashMap<i64, i64>,
    devices: HashMap<i64, i64>,
}

impl Seen {
    pub fn starting_at(last: i64) -> Seen {
        Seen { last, ..Seen::default() }
    }

    pub fn apply(&mut self, seq: i64, scope: Scope) {
        match scope {
            Scope::Everyone => self.everyone = seq,
            Scope::Merchant(id) => {
                self.merchants.insert(id, seq);
            }
            Scope::Location(id) => {
                self.locations.insert(id, seq);
            }
            Scope::Device(id) => {
                self.devices.insert(id, seq);
            }
            Scope::Deployments => self.deployments = seq,
            Scope::Keys => {}
        }
        self.last = self.last.max(seq);
    }

    /// Whether the deployments a target was planned with are still those in
    /// force. When they are not (and nothing else changed), the target is
    /// planned again in memory from the reported state.
    pub fn deployments_hold(&self, computed_at: i64) -> bool {
        computed_at >= self.deployments
    }

    /// Whether a target computed at `computed_at` for this device still
    /// holds, apart from deployments (see `deployments_hold`).
    pub fn still_holds(&self, computed_at: i64, merchant: i64, location: i64, device: i64) -> bool {
        let changed = |m: &HashMap<i64, i64>, id: i64| m.get(&id).copied().unwrap_or(0);
        computed_at >= self.everyone
            && computed_at >= changed(&self.merchants, merchant)
            && computed_at >= changed(&self.locations, location)
            && computed_at >= changed(&self.devices, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_to_a_scope_invalidates_only_targets_computed_before_it() {
        let mut seen = Seen::starting_at(10);
        assert!(seen.still_holds(10, 1, 2, 3));
        seen.apply(11, Scope::Location(2));
        assert!(!seen.still_holds(10, 1, 2, 3));
        assert!(seen.still_holds(10, 1, 5, 4), "another location's terminal keeps its target");
        assert!(seen.still_holds(11, 1, 2, 3));
        seen.apply(12, Scope::Everyone);
        assert!(!seen.still_holds(11, 1, 5, 4));
        assert_eq!(seen.last, 12);
        seen.apply(13, Scope::Deployments);
        assert!(seen.still_holds(12, 1, 5, 4) && !seen.deployments_hold(12), "deployments apart");
        assert!(seen.deployments_hold(13));
    }
}
