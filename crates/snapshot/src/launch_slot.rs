//! The slot a launch of a group of many takes. The launch reads the group's members with their `ferry:slot`
//! claims and the ledger's volumes, and `slot_pick` chooses. The claim is a tag on the instance, written
//! under the slot's lock after the same read and choice again: a check-then-act that no other launch of
//! the slot can interleave, so two launches never take one slot. A group of one has only slot 0.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ferry_state_machine::observe::{HolderState, ObservedInstance};
use ferry_state_machine::slot_pick::{pick_slot, HolderLife, Pick, SlotView};
use ferry_state_machine::{tags, HookEvent, Progress, SlotChoice, StepError, Verdict};
use tracing::info;

use super::LaunchWork;
use crate::ledger::FIRST_SLOT;
use crate::ports::VolumeQuery;

/// How a holder's state counts for the pick.
fn life(state: HolderState) -> HolderLife {
    match state {
        HolderState::Staying => HolderLife::Staying,
        HolderState::Leaving | HolderState::Replaced => HolderLife::Leaving,
        HolderState::Fenced => HolderLife::Gone,
    }
}

/// The strongest of two claims on one slot: one that stays keeps it.
fn stronger(a: HolderLife, b: HolderLife) -> bool {
    let rank = |l: HolderLife| match l {
        HolderLife::Staying => 2,
        HolderLife::Leaving => 1,
        HolderLife::Gone => 0,
    };
    rank(a) > rank(b)
}

impl LaunchWork {
    /// The slot of this launch: slot 0 in a group of one; in a group of many, the one it claimed already, or
    /// one to claim, or a wait while every slot is held by an instance that stays.
    pub(super) async fn choose_slot(
        &self,
        hook: &HookEvent,
        elapsed: Duration,
    ) -> Result<SlotChoice, StepError> {
        if !self.group.multi_slot {
            return Ok(SlotChoice::Known(self.slot.set(FIRST_SLOT)));
        }
        let me = match self.instance(hook, elapsed).await? {
            Ok(me) => me,
            Err(Progress::Finished(gone)) => return Ok(SlotChoice::Finished(gone)),
            Err(Progress::Waiting(why) | Progress::Blocked(why) | Progress::Acted(why)) => {
                return Ok(SlotChoice::Waiting(why))
            }
        };
        Ok(match self.pick(&me).await? {
            Pick::Mine(n) => {
                info!(slot = n, "the instance holds slot {n} already");
                SlotChoice::Known(self.slot.set(n))
            }
            Pick::Take { slot, .. } => SlotChoice::Claim(slot),
            Pick::Wait(why) if elapsed >= self.group.staying_holder_timeout => {
                SlotChoice::Finished(Verdict::abandon(format!(
                    "launch-before-terminate: {why}; gave up after {}s (launch_before_terminate_timeout_secs)",
                    elapsed.as_secs()
                )))
            }
            Pick::Wait(why) => SlotChoice::Waiting(why),
        })
    }

    /// Under slot `n`'s lock: reads and picks again, and claims `n` by tagging the instance if the pick is
    /// still `n`. `false` when another launch took it meanwhile.
    pub(super) async fn claim_slot(&self, hook: &HookEvent, n: u32) -> Result<bool, StepError> {
        let me = match self.instance(hook, Duration::ZERO).await? {
            Ok(me) => me,
            // Gone or not visible yet: the next `slot` finishes the hook or waits.
            Err(_) => return Ok(false),
        };
        match self.pick(&me).await? {
            Pick::Mine(m) if m == n => {}
            Pick::Take { slot, expected } if slot == n => {
                let t = [
                    (tags::GROUP.to_string(), self.group.name.clone()),
                    (tags::SLOT.to_string(), n.to_string()),
                ];
                self.ec2.tag_instance(&me.id, &t).await?;
                info!(slot = n, previous.holder = ?expected, "claimed slot {n} (its identity is the instance's ferry:slot tag)");
            }
            _ => return Ok(false),
        }
        self.slot.set(n);
        Ok(true)
    }

    /// Reads the group and the ledger and picks this launch's slot.
    async fn pick(&self, me: &ObservedInstance) -> Result<Pick, StepError> {
        let names = self.group.volume_names();
        let query = VolumeQuery {
            group: self.group.name.clone(),
            ..VolumeQuery::default()
        };
        let (info, volumes) = tokio::try_join!(
            self.asg.describe_group(&self.group.name),
            self.ec2.find_volumes(&query)
        )?;
        let info = info.ok_or_else(|| {
            StepError::retry(
                "autoscaling:DescribeAutoScalingGroups",
                format!("group {} not found", self.group.name),
            )
        })?;
        let others: Vec<String> = info
            .instances
            .iter()
            .map(|i| i.instance_id.clone())
            .filter(|id| *id != me.id)
            .collect();
        let members = self.ec2.describe_instances(&others).await?;
        // Claims on each slot: members' tags, then the holders of each slot's attached volumes.
        let mut claims: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for m in &members {
            if let Some(n) = m.slot() {
                claims.entry(n).or_default().push(m.id.clone());
            }
        }
        // Each slot's newest data, by generation: its zone decides the fast path.
        let mut newest: BTreeMap<u32, (u64, String)> = BTreeMap::new();
        for v in volumes
            .iter()
            .filter(|v| v.holds_data() && v.logical.as_ref().is_some_and(|l| names.contains(l)))
        {
            let Some(n) = v.slot else { continue };
            let g = v.generation.map_or(0, |g| g.0);
            if newest.get(&n).is_none_or(|(best, _)| g > *best) {
                newest.insert(n, (g, v.availability_zone.clone()));
            }
            claims.entry(n).or_default();
            if let Some(h) = v.attached_to().filter(|h| *h != me.id) {
                let c = claims.entry(n).or_default();
                if !c.iter().any(|x| x == h) {
                    c.push(h.to_string());
                }
            }
        }
        let mut lives: HashMap<String, HolderLife> = HashMap::new();
        let mut views = Vec::with_capacity(claims.len());
        for (n, holders) in claims {
            let mut best: Option<(String, HolderLife)> = None;
            for h in holders {
                let l = match lives.get(&h) {
                    Some(l) => *l,
                    None => {
                        let l = life(self.holder_state(&h).await?);
                        lives.insert(h.clone(), l);
                        l
                    }
                };
                if best.as_ref().is_none_or(|(_, b)| stronger(l, *b)) {
                    best = Some((h, l));
                }
            }
            views.push(SlotView {
                slot: n,
                holder: best,
                data_zone: newest.get(&n).map(|(_, z)| z.clone()),
            });
        }
        // The instance's own claim stands while no instance that stays holds the slot (a warm instance that
        // comes back finds its old slot taken by another).
        if let Some(n) = me.slot() {
            let held = views.iter().any(|v| {
                v.slot == n
                    && v.holder
                        .as_ref()
                        .is_some_and(|(_, l)| *l == HolderLife::Staying)
            });
            if !held {
                return Ok(Pick::Mine(n));
            }
        }
        let desired = u32::try_from(info.capacity.2.max(0)).unwrap_or(0);
        Ok(pick_slot(&me.id, &me.availability_zone, desired, &views))
    }
}
