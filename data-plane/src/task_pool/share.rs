//! Which queued tasks start now: the cell's task slots split among its environments by
//! weighted max-min fair share at slot granularity ([`allocate`] with one task per "worker"),
//! after each environment's guaranteed minimum and within its cap. Pure.
//!
//! Nothing running is ever stopped to make room: an environment above its share (it took
//! slots while the others were idle) keeps them until its tasks end, and each freed slot goes
//! to the environment furthest below its share.

use crate::autoscaler::{allocate, Demand};

/// What one environment asks of the pool now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Tasks waiting for a slot (that may start: their token is still valid).
    pub queued: u32,
    /// Tasks holding a slot.
    pub running: u32,
    /// Slots it is guaranteed when it has work for them.
    pub min_tasks: u32,
    /// The most slots it may hold at once.
    pub max_tasks: u32,
    /// Its share of contended slots relative to the others (at least 1).
    pub weight: u32,
}

/// Each environment's share of `slots` (same order as `loads`).
pub fn shares(slots: u32, loads: &[Load]) -> Vec<u32> {
    let demands: Vec<Demand> = loads
        .iter()
        .map(|l| Demand {
            queued: l.queued,
            running: l.running,
            concurrency: 1,
            min_workers: l.min_tasks,
            max_workers: l.max_tasks,
            weight: l.weight,
        })
        .collect();
    allocate(slots, &demands)
}

/// How many queued tasks of each environment start now (same order as `loads`): while a slot
/// is free, the environment with queued tasks that is furthest below its share (fewest running
/// per unit of share; ties to the first) gets it.
pub fn starts(slots: u32, loads: &[Load]) -> Vec<u32> {
    let share = shares(slots, loads);
    let mut running: Vec<u32> = loads.iter().map(|l| l.running).collect();
    let mut start = vec![0u32; loads.len()];
    let mut free = slots.saturating_sub(running.iter().sum());
    while free > 0 {
        let next = (0..loads.len())
            .filter(|&i| start[i] < loads[i].queued && running[i] < share[i])
            // running/share smallest: a/sa < b/sb ⇔ a·sb < b·sa.
            .min_by(|&a, &b| {
                (u64::from(running[a]) * u64::from(share[b]))
                    .cmp(&(u64::from(running[b]) * u64::from(share[a])))
            });
        let Some(i) = next else { break };
        start[i] += 1;
        running[i] += 1;
        free -= 1;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(queued: u32, running: u32, weight: u32) -> Load {
        Load {
            queued,
            running,
            min_tasks: 0,
            max_tasks: 100,
            weight,
        }
    }

    #[test]
    fn an_idle_pool_starts_everything_up_to_its_slots() {
        assert_eq!(starts(8, &[load(3, 0, 1), load(2, 0, 1)]), vec![3, 2]);
        assert_eq!(starts(4, &[load(10, 0, 1)]), vec![4]);
        assert_eq!(starts(0, &[load(10, 0, 1)]), vec![0]);
    }

    #[test]
    fn contended_slots_go_by_weight() {
        // 1:3 weights on 8 slots: 2 and 6.
        assert_eq!(starts(8, &[load(20, 0, 1), load(20, 0, 3)]), vec![2, 6]);
        // Three environments, equal weights, 9 slots.
        assert_eq!(
            starts(9, &[load(9, 0, 1), load(9, 0, 1), load(9, 0, 1)]),
            vec![3, 3, 3]
        );
    }

    #[test]
    fn nothing_running_is_taken_back_and_freed_slots_go_below_share() {
        // The first took all 8 slots while alone; the second arrives: nothing is free.
        assert_eq!(starts(8, &[load(5, 8, 1), load(5, 0, 1)]), vec![0, 0]);
        // Two slots free up: both go to the second, below its share of 4.
        assert_eq!(starts(8, &[load(5, 6, 1), load(5, 0, 1)]), vec![0, 2]);
    }

    #[test]
    fn the_cap_and_the_guaranteed_minimum_hold() {
        let capped = Load {
            max_tasks: 2,
            ..load(10, 0, 10)
        };
        assert_eq!(starts(8, &[capped, load(10, 0, 1)]), vec![2, 6]);
        // Five guaranteed, then the three left shared by weight beyond each one's minimum.
        let guaranteed = Load {
            min_tasks: 5,
            ..load(10, 0, 1)
        };
        assert_eq!(starts(8, &[load(10, 0, 1), guaranteed]), vec![2, 6]);
        assert_eq!(starts(5, &[load(10, 0, 100), guaranteed]), vec![0, 5]);
    }

    #[test]
    fn unused_share_is_not_held_back() {
        // The heavy environment wants only one: the light one gets the rest.
        assert_eq!(starts(8, &[load(1, 0, 10), load(20, 0, 1)]), vec![1, 7]);
    }
}
