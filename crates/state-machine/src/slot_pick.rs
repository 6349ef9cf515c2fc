//! Which slot of a multi-slot group a launch takes: its own claim if it has one; else a free slot with
//! data, the one whose newest data is already in the launch's zone first, then the lowest number; else a
//! new slot, only while the group has fewer slots than its desired capacity; else wait.
//!
//! Pure: the shell reads the group (members, their lifecycle states and `ferry:slot` tags), the ledger
//! (which slots hold data, and where) and the claims, and then makes the claim this picks conditional on
//! the holder it saw, so that two launches that pick one slot cannot both have it.

/// How the instance that holds a slot's claim stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderLife {
    /// In service, pending, in standby or detached: it keeps the slot.
    Staying,
    /// On its way out (terminating, or returned to a warm pool): its slot comes free once it is fenced.
    Leaving,
    /// Terminated or unknown to the group: its slot is free.
    Gone,
}

/// One slot as the shell read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotView {
    /// The slot number.
    pub slot: u32,
    /// The instance that claimed it, and how that instance stands.
    pub holder: Option<(String, HolderLife)>,
    /// The zone of the slot's newest data, if it has any.
    pub data_zone: Option<String>,
}

/// What the launch does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// It already holds this slot (a redelivery, a restart): go on with it.
    Mine(u32),
    /// Claim this slot, on the condition that its holder is still `expected` (`None`: no claim yet).
    Take {
        /// The slot.
        slot: u32,
        /// The holder the claim is conditional on.
        expected: Option<String>,
    },
    /// No slot can be taken now; why.
    Wait(String),
}

/// Picks the slot for the launching instance `me` in `zone`, in a group of `desired` instances.
pub fn pick_slot(me: &str, zone: &str, desired: u32, slots: &[SlotView]) -> Pick {
    if let Some(s) = slots
        .iter()
        .find(|s| s.holder.as_ref().is_some_and(|(h, _)| h == me))
    {
        return Pick::Mine(s.slot);
    }
    let free = slots.iter().filter(|s| match &s.holder {
        None => true,
        Some((_, life)) => *life != HolderLife::Staying,
    });
    // In the zone first, then the lowest number: `false < true` puts the zone's slots first.
    if let Some(s) = free.min_by_key(|s| (s.data_zone.as_deref() != Some(zone), s.slot)) {
        return Pick::Take {
            slot: s.slot,
            expected: s.holder.as_ref().map(|(h, _)| h.clone()),
        };
    }
    let known = u32::try_from(slots.len()).unwrap_or(u32::MAX);
    if known < desired {
        let new = (0..)
            .find(|n| slots.iter().all(|s| s.slot != *n))
            .unwrap_or(known);
        return Pick::Take {
            slot: new,
            expected: None,
        };
    }
    Pick::Wait(format!(
        "every slot of the group ({known}, for a desired capacity of {desired}) is held by an instance that stays; \
         waiting for one to leave"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use HolderLife::*;

    fn slot(n: u32, holder: Option<(&str, HolderLife)>, zone: Option<&str>) -> SlotView {
        SlotView {
            slot: n,
            holder: holder.map(|(h, l)| (h.to_string(), l)),
            data_zone: zone.map(str::to_string),
        }
    }

    fn take(slot: u32, expected: Option<&str>) -> Pick {
        Pick::Take {
            slot,
            expected: expected.map(str::to_string),
        }
    }

    #[test]
    fn the_table() {
        let cases: Vec<(&str, u32, Vec<SlotView>, Pick)> = vec![
            ("first boot of a group of three", 3, vec![], take(0, None)),
            (
                "the second launch of a first boot takes the next number",
                3,
                vec![slot(0, Some(("i-a", Staying)), None)],
                take(1, None),
            ),
            (
                "a gap is filled before the next number",
                3,
                vec![
                    slot(0, Some(("i-a", Staying)), Some("a")),
                    slot(2, Some(("i-c", Staying)), Some("b")),
                ],
                take(1, None),
            ),
            (
                "a replacement takes the slot of the instance that left, not a new one",
                3,
                vec![
                    slot(0, Some(("i-a", Staying)), Some("a")),
                    slot(1, Some(("i-b", Gone)), Some("b")),
                    slot(2, Some(("i-c", Staying)), Some("a")),
                ],
                take(1, Some("i-b")),
            ),
            (
                "a terminating holder's slot is free (the fence is the launch's wait)",
                3,
                vec![
                    slot(0, Some(("i-a", Leaving)), Some("b")),
                    slot(1, Some(("i-b", Staying)), Some("b")),
                    slot(2, Some(("i-c", Staying)), Some("a")),
                ],
                take(0, Some("i-a")),
            ),
            (
                "a parked slot is reused before a new one is made",
                3,
                vec![
                    slot(0, Some(("i-a", Staying)), Some("a")),
                    slot(1, Some(("i-b", Staying)), Some("b")),
                    slot(2, None, Some("b")),
                ],
                take(2, None),
            ),
            (
                "a parked slot whose data is in the launch's zone wins over a lower one elsewhere",
                4,
                vec![
                    slot(0, None, Some("b")),
                    slot(1, Some(("i-b", Staying)), Some("b")),
                    slot(2, None, Some("a")),
                ],
                take(2, None),
            ),
            (
                "among free slots in other zones, the lowest number",
                3,
                vec![
                    slot(0, Some(("i-a", Staying)), Some("a")),
                    slot(1, None, Some("c")),
                    slot(2, Some(("i-c", Gone)), Some("b")),
                ],
                take(1, None),
            ),
            (
                "a redelivered launch keeps the slot it claimed",
                3,
                vec![
                    slot(0, Some(("i-a", Staying)), Some("a")),
                    slot(1, Some(("i-me", Staying)), None),
                ],
                Pick::Mine(1),
            ),
        ];
        for (name, desired, slots, want) in cases {
            assert_eq!(pick_slot("i-me", "a", desired, &slots), want, "{name}");
        }
    }

    #[test]
    fn a_full_group_waits_rather_than_making_a_slot_beyond_its_desired_capacity() {
        let slots = vec![
            slot(0, Some(("i-a", Staying)), Some("a")),
            slot(1, Some(("i-b", Staying)), Some("b")),
        ];
        match pick_slot("i-me", "a", 2, &slots) {
            Pick::Wait(why) => assert!(why.contains("desired capacity of 2"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Scaled out to three: now a new slot.
        assert_eq!(pick_slot("i-me", "a", 3, &slots), take(2, None));
    }
}
