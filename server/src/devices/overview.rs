//! The fleet at a glance, for the operator console: active terminals by
//! model, firmware and app version, contacts per minute, and the rollouts
//! under way.
//!
//! Counting a million terminals by version takes seconds, so the counts
//! are taken by a background pass ([`SummaryCache::refresh`]) and pages
//! read the latest; contacts per minute and rollouts are read live (a
//! day's minutes and a few deployments).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::accounts::access::Actor;
use tms_packages::wire::deployments::DeploymentView;

use crate::db::schema::{contact_minutes, deployments, missing_devices, rollouts};
use crate::db::{Db, DbConnection, DbError};
use crate::error::Error;
use crate::rollouts::deployments::{DeploymentRow, READERS};

/// Contacts per minute are kept this long (the chart shows a day).
pub const CONTACT_MINUTES_KEPT: i64 = 2 * 24 * 60;

/// Versions a chart names; the rest are summed as "others".
pub const CHART_BARS: usize = 12;

/// Active terminals counted by what they are and run.
#[derive(Debug, Clone, Default)]
pub struct FleetCounts {
    pub counted_at: Option<NaiveDateTime>,
    pub active: i64,
    /// Active terminals that never reported their state.
    pub never_reported: i64,
    pub by_model: Vec<(String, i64)>,
    pub by_firmware: Vec<(String, i64)>,
    /// (app id, version, terminals), per app the most common first.
    pub by_app_version: Vec<(String, String, i64)>,
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = Text)]
    label: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct AppCounted {
    #[diesel(sql_type = Text)]
    app_id: String,
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Counts the active fleet (a full scan: run it in the background).
pub fn count(conn: &mut DbConnection, at: NaiveDateTime) -> Result<FleetCounts, DbError> {
    let by_model: Vec<Counted> = diesel::sql_query(
        "SELECT model AS label, COUNT(*) AS n FROM devices WHERE status = 'active' \
         GROUP BY model ORDER BY n DESC, label",
    )
    .load(conn)?;
    let by_firmware: Vec<Counted> = diesel::sql_query(
        "SELECT i.firmware AS label, COUNT(*) AS n FROM device_inventory i \
         JOIN devices d ON d.id = i.device_id WHERE d.status = 'active' \
         GROUP BY i.firmware ORDER BY n DESC, label",
    )
    .load(conn)?;
    let apps_sql = match conn {
        DbConnection::Sqlite(_) => {
            "SELECT json_extract(a.value, '$.app_id') AS app_id, \
             json_extract(a.value, '$.version') AS version, COUNT(*) AS n \
             FROM device_inventory i JOIN devices d ON d.id = i.device_id, \
             json_each(i.state_json, '$.apps') a WHERE d.status = 'active' \
             GROUP BY 1, 2 ORDER BY 1, n DESC, 2"
        }
        DbConnection::Postgres(_) => {
            "SELECT a->>'app_id' AS app_id, a->>'version' AS version, COUNT(*) AS n \
             FROM device_inventory i JOIN devices d ON d.id = i.device_id, \
             jsonb_array_elements(i.state_json::jsonb -> 'apps') a WHERE d.status = 'active' \
             GROUP BY 1, 2 ORDER BY 1, n DESC, 2"
        }
    };
    let by_app_version: Vec<AppCounted> = diesel::sql_query(apps_sql).load(conn)?;
    let active: i64 = by_model.iter().map(|c| c.n).sum();
    let reported: i64 = by_firmware.iter().map(|c| c.n).sum();
    Ok(FleetCounts {
        counted_at: Some(at),
        active,
        never_reported: (active - reported).max(0),
        by_model: by_model.into_iter().map(|c| (c.label, c.n)).collect(),
        by_firmware: by_firmware.into_iter().map(|c| (c.label, c.n)).collect(),
        by_app_version: by_app_version.into_iter().map(|c| (c.app_id, c.version, c.n)).collect(),
    })
}

/// Adds a flush's contacts to their minutes and forgets minutes past
/// [`CONTACT_MINUTES_KEPT`].
pub fn add_contact_minutes(conn: &mut DbConnection, counts: &BTreeMap<i64, i64>) -> Result<(), DbError> {
    let Some(&latest) = counts.keys().next_back() else { return Ok(()) };
    crate::db::write_tx(conn, |conn| {
        for (&minute, &n) in counts {
            let upsert = diesel::insert_into(contact_minutes::table)
                .values((contact_minutes::minute.eq(minute), contact_minutes::contacts.eq(n)));
            match conn {
                DbConnection::Sqlite(c) => upsert
                    .on_conflict(contact_minutes::minute)
                    .do_update()
                    .set(contact_minutes::contacts.eq(contact_minutes::contacts + n))
                    .execute(c)?,
                DbConnection::Postgres(c) => upsert
                    .on_conflict(contact_minutes::minute)
                    .do_update()
                    .set(contact_minutes::contacts.eq(contact_minutes::contacts + n))
                    .execute(c)?,
            };
        }
        diesel::delete(
            contact_minutes::table.filter(contact_minutes::minute.lt(latest - CONTACT_MINUTES_KEPT)),
        )
        .execute(conn)?;
        Ok(())
    })
}

/// Contacts per minute from `from` to `to` (unix minutes, both included),
/// every minute present (0 where none came).
pub fn contacts_per_minute(conn: &mut DbConnection, from: i64, to: i64) -> Result<Vec<(i64, i64)>, DbError> {
    let found: BTreeMap<i64, i64> = contact_minutes::table
        .filter(contact_minutes::minute.between(from, to))
        .select((contact_minutes::minute, contact_minutes::contacts))
        .load::<(i64, i64)>(conn)?
        .into_iter()
        .collect();
    Ok((from..=to).map(|m| (m, found.get(&m).copied().unwrap_or(0))).collect())
}

/// Deployments whose rollout is running, waiting for approval or paused,
/// newest first.
pub fn rollouts_under_way(conn: &mut DbConnection) -> Result<Vec<DeploymentView>, Error> {
    let rows: Vec<DeploymentRow> = deployments::table
        .filter(
            deployments::id.eq_any(
                rollouts::table
                    .filter(rollouts::status.eq_any(["running", "waiting_approval", "paused"]))
                    .select(rollouts::deployment_id),
            ),
        )
        .filter(deployments::status.eq_any(["active", "held"]))
        .order(deployments::id.desc())
        .limit(100)
        .select(DeploymentRow::as_select())
        .load(conn)?;
    rows.iter().map(|row| crate::rollouts::deployments::view(conn, row, false)).collect()
}

/// The overview a page shows: the latest counts and the live figures.
#[derive(Debug, Clone)]
pub struct FleetOverview {
    pub counts: Arc<FleetCounts>,
    /// (unix minute, contacts), the last 24 hours.
    pub contacts: Vec<(i64, i64)>,
    pub missing: i64,
    pub rollouts: Vec<DeploymentView>,
}

pub fn overview(
    conn: &mut DbConnection,
    actor: &Actor,
    counts: Arc<FleetCounts>,
    now: NaiveDateTime,
) -> Result<FleetOverview, Error> {
    actor.require_operator(READERS)?;
    let minute = now.and_utc().timestamp().div_euclid(60);
    let contacts = contacts_per_minute(conn, minute - 24 * 60 + 1, minute)?;
    let missing = missing_devices::table.count().get_result(conn)?;
    let rollouts = rollouts_under_way(conn)?;
    Ok(FleetOverview { counts, contacts, missing, rollouts })
}

/// The latest counts of the fleet, shared by the pages of this process.
#[derive(Default)]
pub struct SummaryCache {
    latest: RwLock<Arc<FleetCounts>>,
}

impl SummaryCache {
    /// The latest counts (empty, without `counted_at`, before the first pass).
    pub fn latest(&self) -> Arc<FleetCounts> {
        self.latest.read().expect("not poisoned").clone()
    }

    /// Counts the fleet again.
    pub async fn refresh(&self, db: &Db) -> Result<Arc<FleetCounts>, Error> {
        let at = crate::time::now();
        let counts = Arc::new(db.run(move |conn| count(conn, at)).await?);
        *self.latest.write().expect("not poisoned") = counts.clone();
        Ok(counts)
    }

    /// The latest counts, taken now if none were (the first page after a start).
    pub async fn latest_or_count(&self, db: &Db) -> Result<Arc<FleetCounts>, Error> {
        let latest = self.latest();
        if latest.counted_at.is_some() { Ok(latest) } else { self.refresh(db).await }
    }
}

/// Groups a chart's bars: the [`CHART_BARS`] largest, the rest as one.
pub fn top_with_others(counts: &[(String, i64)], others: &str) -> Vec<(String, i64)> {
    let mut sorted: Vec<(String, i64)> = counts.to_vec();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if sorted.len() <= CHART_BARS {
        return sorted;
    }
    let rest: i64 = sorted[CHART_BARS - 1..].iter().map(|c| c.1).sum();
    sorted.truncate(CHART_BARS - 1);
    sorted.push((others.to_owned(), rest));
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn grouping_keeps_the_total_and_the_largest(counts in proptest::collection::btree_map("[a-z]{1,6}", 0i64..1_000_000, 0..40)) {
            let counts: Vec<(String, i64)> = counts.into_iter().collect();
            let grouped = top_with_others(&counts, "others");
            prop_assert!(grouped.len() <= CHART_BARS);
            prop_assert_eq!(grouped.iter().map(|c| c.1).sum::<i64>(), counts.iter().map(|c| c.1).sum::<i64>());
            let largest = counts.iter().map(|c| c.1).max();
            if let Some(largest) = largest {
                prop_assert_eq!(grouped[0].1.max(grouped.last().map(|c| c.1).unwrap_or(0)) >= largest, true);
            }
        }
    }
}
