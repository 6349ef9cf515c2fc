//! The launch's slot-level rule: the per-volume decisions of one slot are combined so that every volume
//! of the slot comes from one consistent point, never from per-volume independent choices.

use crate::machine::{VolumeStep, WaitFor};

/// What a launch does next for its whole slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotStep {
    /// Abandon, for the reason of the volume at this index.
    Abandon(usize),
    /// Perform the mutating step of the volume at this index.
    Act(usize),
    /// Every volume waits, or the slot barrier holds: observe again after a poll interval.
    Wait,
    /// Every volume is attached with the newest data.
    Ready,
}

/// Combines the per-volume steps of one slot, in config order:
///
/// 1. Any volume that must abandon abandons the launch before anything else is done, so a launch that
///    cannot have all its data does not half-restore it.
/// 2. **The slot barrier.** While another instance still holds *any* volume of the slot, no volume moves:
///    no claim, no final snapshot, no restore. Every volume is therefore copied after the one instant at
///    which the old instance let go of all of them (its termination), and no volume runs ahead of the
///    others. The one step the barrier lets through is the handover's fence of that holder
///    ([`VolumeStep::FenceHolder`]), which is what makes it let go.
/// 3. Otherwise the first volume with a mutating step gets it.
/// 4. Otherwise wait if any volume waits, else the slot is ready.
pub fn decide_launch_slot(steps: &[VolumeStep]) -> SlotStep {
    if let Some(i) = steps
        .iter()
        .position(|s| matches!(s, VolumeStep::Abandon(_)))
    {
        return SlotStep::Abandon(i);
    }
    let barrier = steps.iter().any(|s| {
        matches!(
            s,
            VolumeStep::Wait(WaitFor::Holder { .. } | WaitFor::StayingHolder { .. })
        )
    });
    if barrier {
        return SlotStep::Wait;
    }
    if let Some(i) = steps
        .iter()
        .position(|s| !matches!(s, VolumeStep::Ready { .. } | VolumeStep::Wait(_)))
    {
        return SlotStep::Act(i);
    }
    if steps.iter().any(|s| matches!(s, VolumeStep::Wait(_))) {
        return SlotStep::Wait;
    }
    SlotStep::Ready
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Generation;

    fn ready() -> VolumeStep {
        VolumeStep::Ready {
            volume_id: "vol-r".into(),
            generation: Generation(2),
        }
    }
    fn holder() -> VolumeStep {
        VolumeStep::Wait(WaitFor::Holder {
            instance_id: "i-old".into(),
            volume_id: "vol-b".into(),
        })
    }
    fn snap() -> VolumeStep {
        VolumeStep::SnapshotVolume {
            volume_id: "vol-a".into(),
            generation: Generation(1),
        }
    }

    #[test]
    fn a_volume_still_held_stops_every_other_volume_from_moving() {
        // Volume a is already detached, volume b still attached to the leaving instance: a must not be
        // snapshotted yet, or it would be fenced before b and the set would not be one point in time.
        assert_eq!(decide_launch_slot(&[snap(), holder()]), SlotStep::Wait);
        let staying = VolumeStep::Wait(WaitFor::StayingHolder {
            instance_id: "i-old".into(),
            volume_id: "vol-b".into(),
        });
        assert_eq!(decide_launch_slot(&[staying, snap()]), SlotStep::Wait);
    }

    #[test]
    fn abandon_wins_over_everything_and_names_the_volume() {
        let steps = [snap(), holder(), VolumeStep::Abandon("gone".into())];
        assert_eq!(decide_launch_slot(&steps), SlotStep::Abandon(2));
    }

    #[test]
    fn the_first_mutating_step_in_config_order_acts() {
        let pending = VolumeStep::Wait(WaitFor::Snapshot("snap-1".into()));
        assert_eq!(
            decide_launch_slot(&[ready(), pending.clone(), snap()]),
            SlotStep::Act(2)
        );
        assert_eq!(decide_launch_slot(&[ready(), pending]), SlotStep::Wait);
        assert_eq!(decide_launch_slot(&[ready(), ready()]), SlotStep::Ready);
        assert_eq!(decide_launch_slot(&[]), SlotStep::Ready);
    }
}
