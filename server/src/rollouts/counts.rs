//! Where each stage of a rollout stood over time. Counting a stage means
//! reading every targeted terminal (a million of them for `everyone`), so
//! the supervisor counts as part of its pass and keeps the last count of
//! each minute; the console draws the stages over time from these counts
//! and shows the latest without counting while its page waits.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use tms_packages::wire::deployments::{RolloutCountsView, RolloutHistoryView, StageStats};

use super::deployments::{self, DeploymentRow, READERS};
use super::{RolloutRow, for_deployment, tally};
use crate::accounts::access::Actor;
use crate::db::schema::{rollout_stage_counts as counts, rollouts};
use crate::db::{DbConnection, DbError};
use crate::error::Error;
use crate::time::{now, rfc3339};

/// Counts listed at most by [`history`]: a chart's worth.
pub const HISTORY_POINTS: usize = 240;

/// How long a finished (completed) rollout is still counted: its terminals
/// keep installing after the last stage succeeded.
const COUNTED_AFTER_COMPLETION: chrono::Duration = chrono::Duration::days(7);

fn minute_of(at: NaiveDateTime) -> i64 {
    at.and_utc().timestamp().div_euclid(60)
}

type CountRow = (i32, NaiveDateTime, i64, i64, i64, i64, i64, i64, i64, i64);

fn stats_of(row: &CountRow, stages_bp: &[u32]) -> StageStats {
    let (stage, _, devices, pending, in_progress, installed, failed, timed_out, failed_for_good, postponed) =
        *row;
    let n = |v: i64| v.max(0) as u64;
    StageStats {
        stage: stage as u32,
        percent: f64::from(stages_bp.get(stage as usize).copied().unwrap_or(0)) / 100.0,
        devices: n(devices),
        pending: n(pending),
        in_progress: n(in_progress),
        installed: n(installed),
        failed: n(failed),
        timed_out: n(timed_out),
        failed_for_good: n(failed_for_good),
        postponed: n(postponed),
    }
}

/// Keeps `stages` as the rollout's count for the minute of `at`, replacing
/// an earlier count of that minute.
pub fn record(
    conn: &mut DbConnection,
    rollout_id: i64,
    stages: &[StageStats],
    at: NaiveDateTime,
) -> Result<(), DbError> {
    let minute = minute_of(at);
    let n = |v: u64| v.min(i64::MAX as u64) as i64;
    let rows: Vec<_> = stages
        .iter()
        .map(|s| {
            (
                counts::rollout_id.eq(rollout_id),
                counts::minute.eq(minute),
                counts::stage.eq(s.stage as i32),
                counts::counted_at.eq(at),
                counts::devices.eq(n(s.devices)),
                counts::pending.eq(n(s.pending)),
                counts::in_progress.eq(n(s.in_progress)),
                counts::installed.eq(n(s.installed)),
                counts::failed.eq(n(s.failed)),
                counts::timed_out.eq(n(s.timed_out)),
                counts::failed_for_good.eq(n(s.failed_for_good)),
                counts::postponed.eq(n(s.postponed)),
            )
        })
        .collect();
    crate::db::write_tx(conn, |conn| {
        diesel::delete(
            counts::table.filter(counts::rollout_id.eq(rollout_id)).filter(counts::minute.eq(minute)),
        )
        .execute(conn)?;
        for row in rows {
            diesel::insert_into(counts::table).values(row).execute(conn)?;
        }
        Ok(())
    })
}

/// Counts the rollout's stages now and keeps the count.
pub fn count(
    conn: &mut DbConnection,
    deployment: &DeploymentRow,
    rollout: &RolloutRow,
) -> Result<Vec<StageStats>, Error> {
    let stages = tally(conn, deployment, rollout)?.stages;
    record(conn, rollout.id, &stages, now())?;
    Ok(stages)
}

fn load_minutes(
    conn: &mut DbConnection,
    rollout_id: i64,
    minutes: &[i64],
) -> Result<BTreeMap<i64, Vec<CountRow>>, DbError> {
    let rows: Vec<(i64, CountRow)> = counts::table
        .filter(counts::rollout_id.eq(rollout_id))
        .filter(counts::minute.eq_any(minutes))
        .order((counts::minute, counts::stage))
        .select((
            counts::minute,
            (
                counts::stage,
                counts::counted_at,
                counts::devices,
                counts::pending,
                counts::in_progress,
                counts::installed,
                counts::failed,
                counts::timed_out,
                counts::failed_for_good,
                counts::postponed,
            ),
        ))
        .load(conn)?;
    let mut by_minute: BTreeMap<i64, Vec<CountRow>> = BTreeMap::new();
    for (minute, row) in rows {
        by_minute.entry(minute).or_default().push(row);
    }
    Ok(by_minute)
}

fn view_of(rows: &[CountRow], stages_bp: &[u32]) -> RolloutCountsView {
    RolloutCountsView {
        counted_at: rows.first().map(|r| rfc3339(r.1)).unwrap_or_default(),
        stages: rows.iter().map(|r| stats_of(r, stages_bp)).collect(),
    }
}

/// The rollout's latest count and when it was taken, if it ever was.
pub fn latest(
    conn: &mut DbConnection,
    rollout: &RolloutRow,
) -> Result<Option<(NaiveDateTime, Vec<StageStats>)>, DbError> {
    let last: Option<i64> = counts::table
        .filter(counts::rollout_id.eq(rollout.id))
        .select(diesel::dsl::max(counts::minute))
        .first(conn)?;
    let Some(last) = last else { return Ok(None) };
    let found = load_minutes(conn, rollout.id, &[last])?;
    let stages_bp = rollout.stages_bp();
    Ok(found.get(&last).and_then(|rows| {
        let at = rows.first()?.1;
        Some((at, rows.iter().map(|r| stats_of(r, &stages_bp)).collect()))
    }))
}

/// Of `minutes` (ascending), at most `points`, evenly spaced over the span,
/// the first and the last always in; and the step between them.
pub fn spread(minutes: &[i64], points: usize) -> (Vec<i64>, i64) {
    let (Some(&first), Some(&last)) = (minutes.first(), minutes.last()) else { return (Vec::new(), 1) };
    let points = points.max(2) as i64;
    let span = last - first;
    let step = (span + points - 2) / (points - 1);
    let step = step.max(1);
    let mut picked: Vec<i64> = minutes.iter().copied().filter(|m| (m - first) % step == 0).collect();
    if picked.last() != Some(&last) {
        picked.push(last);
    }
    (picked, step)
}

/// The rollout's counts over its life, for a chart.
pub fn history(
    conn: &mut DbConnection,
    actor: &Actor,
    deployment_id: i64,
) -> Result<RolloutHistoryView, Error> {
    actor.require_operator(READERS)?;
    deployments::find(conn, deployment_id)?;
    let rollout = for_deployment(conn, deployment_id)?.ok_or_else(|| Error::not_found("rollout"))?;
    let minutes: Vec<i64> = counts::table
        .filter(counts::rollout_id.eq(rollout.id))
        .select(counts::minute)
        .distinct()
        .order(counts::minute)
        .load(conn)?;
    let (picked, step) = spread(&minutes, HISTORY_POINTS);
    let stages_bp = rollout.stages_bp();
    let found = load_minutes(conn, rollout.id, &picked)?;
    Ok(RolloutHistoryView {
        deployment_id,
        step_minutes: step.clamp(1, i64::from(u32::MAX)) as u32,
        counts: found.values().map(|rows| view_of(rows, &stages_bp)).collect(),
    })
}

/// The rollouts the supervisor does not evaluate but whose terminals still
/// move (paused ones finish what they started, one waiting for approval
/// and a completed one keep installing): counted when their latest count
/// is older than a minute (ten for a completed one).
pub fn count_idle(conn: &mut DbConnection) -> Result<(), Error> {
    let at = now();
    let idle: Vec<(i64, String, Option<i64>)> =
        rollouts::table
            .left_join(counts::table.on(counts::rollout_id.eq(rollouts::id)))
            .filter(rollouts::status.eq_any(["paused", "waiting_approval"]).or(
                rollouts::status.eq("completed").and(rollouts::updated_at.gt(at - COUNTED_AFTER_COMPLETION)),
            ))
            .group_by((rollouts::id, rollouts::status))
            .select((rollouts::id, rollouts::status, diesel::dsl::max(counts::minute.nullable())))
            .load(conn)?;
    for (id, status, last) in idle {
        let every = if status == "completed" { 10 } else { 1 };
        if last.is_some_and(|m| minute_of(at) - m < every) {
            continue;
        }
        let rollout: RolloutRow = rollouts::table.find(id).select(RolloutRow::as_select()).first(conn)?;
        let deployment = deployments::find(conn, rollout.deployment_id)?;
        count(conn, &deployment, &rollout)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_young_rollout_lists_every_minute() {
        let minutes: Vec<i64> = (100..110).collect();
        assert_eq!(spread(&minutes, 240), (minutes.clone(), 1));
        assert_eq!(spread(&[], 240), (Vec::new(), 1));
        assert_eq!(spread(&[7], 240), (vec![7], 1));
    }

    #[test]
    fn a_long_rollout_is_spread_evenly_with_its_latest_count() {
        let minutes: Vec<i64> = (0..=1000).collect();
        let (picked, step) = spread(&minutes, 11);
        assert_eq!(step, 100);
        assert_eq!(picked, (0..=10).map(|i| i * 100).collect::<Vec<_>>());
        let (picked, _) = spread(&(0..=1001).collect::<Vec<_>>(), 11);
        assert_eq!(picked.last(), Some(&1001));
    }

    proptest! {
        #[test]
        fn never_more_than_asked_first_and_last_kept(
            mut minutes in proptest::collection::btree_set(0i64..100_000, 1..2000),
            points in 2usize..400,
        ) {
            let minutes: Vec<i64> = std::mem::take(&mut minutes).into_iter().collect();
            let (picked, step) = spread(&minutes, points);
            prop_assert!(picked.len() <= points, "{} > {}", picked.len(), points);
            prop_assert_eq!(picked.first(), minutes.first());
            prop_assert_eq!(picked.last(), minutes.last());
            prop_assert!(step >= 1);
            prop_assert!(picked.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
