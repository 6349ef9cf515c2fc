//! Launch executor tests of a group of many on the in-memory fakes with paused time: concurrent launches
//! claim distinct slots, and a launch next to a live slot takes the parked one with its own data only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ferry_snapshot::fake::ledger_tags;
use ferry_snapshot::GroupSpec;
use ferry_state_machine::{tags, GroupInfo, GroupInstance, LifecycleResult};

/// `one_volume()` as a group of many with one Elastic IP per slot.
fn many() -> GroupSpec {
    let mut g = one_volume();
    g.multi_slot = true;
    g.elastic_ip = None;
    g.elastic_ips = vec![EIP.into(), "eipalloc-slot1".into()];
    g
}

/// Tells `describe_group` the group holds `members` (id, AZ, lifecycle state) and desires that many.
fn members(w: &World, members: &[(&str, &str, &str)]) {
    let n = i32::try_from(members.len()).unwrap();
    w.asg.put_group(GroupInfo {
        name: GROUP.into(),
        capacity: (0, 3, n),
        instances: members
            .iter()
            .map(|(id, az, state)| GroupInstance {
                instance_id: (*id).into(),
                group: GROUP.into(),
                availability_zone: (*az).into(),
                lifecycle_state: (*state).into(),
                health_status: "Healthy".into(),
            })
            .collect(),
        ..GroupInfo::default()
    });
}

#[tokio::test(start_paused = true)]
async fn two_launches_at_once_claim_distinct_slots_each_with_its_own_first_boot_volume() {
    let w = World::new(many());
    w.ec2.add_address("eipalloc-slot1", "203.0.113.11");
    w.ec2.set_timings(timings());
    let a = w.launch_hook("i-a", AZ_A, "tok-a");
    let b = w.launch_hook("i-b", AZ_B, "tok-b");
    members(
        &w,
        &[("i-a", AZ_A, "Pending:Wait"), ("i-b", AZ_B, "Pending:Wait")],
    );
    let (wa, wb) = (w.launch_work(), w.launch_work());
    let (da, db) = (w.shared_driver(), w.shared_driver());

    let (oa, ob) = tokio::join!(
        da.run(&a, &wa, std::time::Duration::ZERO, w.no_shutdown()),
        db.run(&b, &wb, std::time::Duration::ZERO, w.no_shutdown())
    );

    assert_completed(&oa, LifecycleResult::Continue);
    assert_completed(&ob, LifecycleResult::Continue);
    let slot = |i: &str| {
        w.ec2
            .instance(i)
            .unwrap()
            .tag(tags::SLOT)
            .map(str::to_string)
    };
    let mut slots = [slot("i-a"), slot("i-b")];
    slots.sort();
    assert_eq!(slots, [Some("0".to_string()), Some("1".to_string())]);
    let vols = w.volumes_of("data");
    assert_eq!(vols.len(), 2, "one first-boot volume per slot: {vols:?}");
    for v in &vols {
        let holder = v
            .attachment
            .as_ref()
            .map(|a| a.instance_id.clone())
            .unwrap();
        assert_eq!(v.tag(tags::SLOT), slot(&holder).as_deref(), "{v:?}");
        assert_eq!(v.snapshot_id, None, "a new slot starts empty");
    }
    let owner = |alloc: &str| w.ec2.address(alloc).and_then(|a| a.instance_id);
    let of_slot = |n: &str| {
        if slot("i-a").as_deref() == Some(n) {
            "i-a"
        } else {
            "i-b"
        }
    };
    assert_eq!(owner(EIP).as_deref(), Some(of_slot("0")));
    assert_eq!(owner("eipalloc-slot1").as_deref(), Some(of_slot("1")));
}

#[tokio::test(start_paused = true)]
async fn a_launch_beside_a_live_slot_takes_the_parked_one_and_only_its_data() {
    let w = World::new(many());
    w.ec2.add_address("eipalloc-slot1", "203.0.113.11");
    w.ec2.set_timings(timings());
    // Slot 0 lives on i-0 in AZ a; slot 1 is parked: its generation-3 volume lies detached in AZ b.
    let live = w.in_service("i-0", AZ_A, 2, "launch/old");
    w.ec2.write(&live[0], 100).unwrap();
    let mut parked_tags = ledger_tags(GROUP, 1, "data", 3);
    parked_tags.push((tags::HOOK.into(), "parked/i-gone".into()));
    w.ec2.add_instance("i-gone", AZ_B);
    let parked = w
        .ec2
        .add_attached_volume("i-gone", "/dev/sdf", 20, &parked_tags);
    w.ec2.write(&parked, 777).unwrap();
    w.ec2.detach_for_test(&parked);
    w.ec2.set_instance_state("i-gone", "terminated");
    let hook = w.launch_hook("i-new", AZ_A, "tok-new");
    members(
        &w,
        &[("i-0", AZ_A, "InService"), ("i-new", AZ_A, "Pending:Wait")],
    );

    let out = w.run(&hook, &w.launch_work()).await;

    assert_completed(&out, LifecycleResult::Continue);
    assert_eq!(w.ec2.instance("i-new").unwrap().tag(tags::SLOT), Some("1"));
    let mine = w.data_attached_to("i-new");
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(
        mine[0].availability_zone, AZ_A,
        "brought across to the launch's AZ"
    );
    assert_eq!(
        (mine[0].tag(tags::SLOT), mine[0].tag(tags::GENERATION)),
        (Some("1"), Some("4"))
    );
    assert_eq!(mine[0].content, 777, "slot 1's data, not slot 0's");
    // Slot 0 untouched: same volume, same holder, same data, and its Elastic IP was never moved.
    let v0 = w.ec2.volume(&live[0]).unwrap();
    assert_eq!(v0.attachment.map(|a| a.instance_id).as_deref(), Some("i-0"));
    assert_eq!(v0.content, 100);
    assert_eq!(w.ec2.address(EIP).and_then(|a| a.instance_id), None);
    assert_eq!(
        w.ec2
            .address("eipalloc-slot1")
            .and_then(|a| a.instance_id)
            .as_deref(),
        Some("i-new")
    );
}
