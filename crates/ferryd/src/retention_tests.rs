//! Table tests of the retention decision.

use super::*;

const NOW: i64 = 1_000_000_000;
const DAY: i64 = 86_400;
const POLICY: Policy = Policy {
    keep_generations: 2,
    min_age_secs: 7 * DAY,
    keep_recovery_points: 3,
    recovery_point_max_age_secs: DAY,
};

fn groups() -> Vec<String> {
    vec!["db".into()]
}

fn snap(id: &str, generation: u64, state: State, age_days: i64) -> Resource {
    Resource {
        kind: Kind::Snapshot,
        id: id.into(),
        group: "db".into(),
        slot: Some("0".into()),
        logical: Some("data".into()),
        generation: Some(generation),
        state,
        attached_to: None,
        created: Some(NOW - age_days * DAY),
        source_snapshot: None,
        reason: None,
        set: None,
    }
}

fn vol(id: &str, generation: u64, state: State, age_days: i64) -> Resource {
    Resource {
        kind: Kind::Volume,
        ..snap(id, generation, state, age_days)
    }
}

/// Runs the plan and returns (deleted ids, the reason of each kept id).
fn run(resources: Vec<Resource>) -> (Vec<String>, Vec<(String, String)>) {
    let decisions = plan(&resources, &groups(), POLICY, NOW);
    assert_eq!(
        decisions.len(),
        resources.len(),
        "one decision per resource"
    );
    let mut deleted = Vec::new();
    let mut kept = Vec::new();
    for d in decisions {
        if d.delete {
            deleted.push(d.resource.id);
        } else {
            kept.push((d.resource.id, d.reason));
        }
    }
    deleted.sort();
    (deleted, kept)
}

fn reason_of<'a>(kept: &'a [(String, String)], id: &str) -> &'a str {
    kept.iter()
        .find(|(k, _)| k == id)
        .map_or("<deleted>", |(_, r)| r.as_str())
}

#[test]
fn table_of_single_rules() {
    use State::*;
    // (name, resources, ids deleted, (id, reason fragment) kept)
    type Case = (
        &'static str,
        Vec<Resource>,
        Vec<&'static str>,
        Vec<(&'static str, &'static str)>,
    );
    let cases: Vec<Case> = vec![
        (
            "old generations beyond the two newest go",
            vec![
                snap("s1", 1, Completed, 30),
                vol("v1", 1, Available, 30),
                snap("s2", 2, Completed, 30),
                snap("s3", 3, Completed, 30),
                vol("v3", 3, Available, 30),
            ],
            vec!["s1", "v1"],
            vec![("s2", "among the 2 newest"), ("s3", "newest completed")],
        ),
        (
            "too young to go",
            vec![
                snap("s1", 1, Completed, 2),
                snap("s2", 2, Completed, 30),
                snap("s3", 3, Completed, 30),
            ],
            vec![],
            vec![("s1", "too young")],
        ),
        (
            "attached never goes",
            vec![
                Resource {
                    attached_to: Some("i-1".into()),
                    ..vol("v1", 1, InUse, 30)
                },
                snap("s2", 2, Completed, 30),
                snap("s3", 3, Completed, 30),
            ],
            vec![],
            vec![("v1", "attached to i-1")],
        ),
        (
            "pending snapshots never go",
            vec![
                snap("s1", 1, Pending, 30),
                snap("s2", 2, Completed, 30),
                snap("s3", 3, Completed, 30),
            ],
            vec![],
            vec![("s1", "pending")],
        ),
        (
            "the source of a creating volume stays",
            vec![
                snap("s1", 1, Completed, 30),
                Resource {
                    source_snapshot: Some("s1".into()),
                    ..vol("v9", 1, Creating, 30)
                },
                snap("s2", 2, Completed, 30),
                snap("s3", 3, Completed, 30),
            ],
            vec![],
            vec![("s1", "still creating"), ("v9", "still creating")],
        ),
        (
            "the newest completed generation stays even beyond keep_generations",
            vec![
                snap("s1", 1, Completed, 30),
                snap("s2", 2, Pending, 30),
                vol("v3", 3, Available, 30),
                vol("v4", 4, Available, 30),
            ],
            vec![],
            vec![("s1", "newest completed"), ("v4", "newest generation")],
        ),
        (
            "a volume of the newest generation stays",
            vec![vol("v5", 5, Available, 30), snap("s4", 4, Completed, 30)],
            vec![],
            vec![("v5", "newest generation"), ("s4", "newest completed")],
        ),
        (
            "resources without a generation or of another group stay",
            vec![
                Resource {
                    generation: None,
                    ..snap("s0", 0, Completed, 30)
                },
                Resource {
                    group: "web".into(),
                    ..snap("sw", 1, Completed, 30)
                },
                snap("s2", 2, Completed, 30),
                snap("s3", 3, Completed, 30),
            ],
            vec![],
            vec![("s0", "incomplete ledger tags"), ("sw", "not configured")],
        ),
        (
            "error resources of old generations go; they do not count as a generation",
            vec![
                snap("se", 9, Error, 30),
                snap("s1", 1, Completed, 30),
                snap("s2", 2, Completed, 30),
                snap("s3", 3, Completed, 30),
            ],
            vec!["s1"],
            vec![("se", "among the 2 newest")],
        ),
        (
            "slots and logical volumes are separate lineages",
            vec![
                snap("a1", 1, Completed, 30),
                Resource {
                    logical: Some("wal".into()),
                    ..snap("w1", 1, Completed, 30)
                },
                snap("a2", 2, Completed, 30),
                snap("a3", 3, Completed, 30),
            ],
            vec!["a1"],
            vec![("w1", "newest completed")],
        ),
        (
            "a volume already deleting is left alone",
            vec![
                vol("vd", 1, Deleting, 30),
                snap("s2", 2, Completed, 30),
                snap("s3", 3, Completed, 30),
            ],
            vec![],
            vec![("vd", "already being deleted")],
        ),
    ];
    for (name, resources, want_deleted, want_kept) in cases {
        let (deleted, kept) = run(resources);
        assert_eq!(deleted, want_deleted, "{name}: deleted");
        for (id, fragment) in want_kept {
            let reason = reason_of(&kept, id);
            assert!(
                reason.contains(fragment),
                "{name}: {id} kept because {reason:?}, want {fragment:?}"
            );
        }
    }
}

#[test]
fn keep_generations_one_keeps_only_the_newest_and_the_newest_completed() {
    let resources = vec![
        snap("s1", 1, State::Completed, 30),
        snap("s2", 2, State::Completed, 30),
        vol("v2", 2, State::Available, 30),
        vol("v3", 3, State::Available, 30),
    ];
    let policy = Policy {
        keep_generations: 1,
        ..POLICY
    };
    let mut deleted: Vec<String> = plan(&resources, &groups(), policy, NOW)
        .into_iter()
        .filter(|d| d.delete)
        .map(|d| d.resource.id)
        .collect();
    deleted.sort();
    // s2 is the newest completed snapshot; v2 is its generation too, so it stays with it.
    assert_eq!(deleted, vec!["s1".to_string()]);
}

#[test]
fn reasons_name_the_generations_and_the_age() {
    let resources = vec![
        snap("s1", 1, State::Completed, 30),
        snap("s2", 2, State::Completed, 30),
        snap("s3", 3, State::Completed, 30),
    ];
    let d = plan(&resources, &groups(), POLICY, NOW);
    let gone = d.iter().find(|d| d.delete).map(|d| d.reason.clone());
    assert_eq!(
        gone.as_deref(),
        Some("generation 1 is older than the 2 newest (3, 2) and 30d old")
    );
}

#[test]
fn gc_config_parses_defaults_fractions_and_rejects_bad_values() {
    use crate::config::Config;
    let base = "[queue]\nurl = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n[[groups]]\nname = \"db\"\n[[groups.volumes]]\nname = \"data\"\ndevice = \"/dev/sdf\"\nsize_gib = 1\n";
    let parse = |extra: &str| -> Result<Config, String> {
        let c: Config = toml::from_str(&format!("{base}{extra}")).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    };
    let c = parse("").expect("defaults");
    assert_eq!((c.gc.keep_generations, c.gc.min_age_days), (3, 7.0));
    assert_eq!(c.gc.min_age_secs(), 7 * DAY);
    let c = parse("[gc]\nkeep_generations = 5\nmin_age_days = 0.5\n").expect("fraction");
    assert_eq!((c.gc.keep_generations, c.gc.min_age_secs()), (5, DAY / 2));
    let c = parse("[gc]\nmin_age_days = 2\n").expect("an integer is fine");
    assert_eq!(c.gc.min_age_secs(), 2 * DAY);
    for (bad, key) in [
        ("[gc]\nkeep_generations = 0\n", "gc.keep_generations"),
        ("[gc]\nmin_age_days = -1\n", "gc.min_age_days"),
        ("[gc]\nkeep = 1\n", "unknown field"),
    ] {
        let err = parse(bad).expect_err(bad);
        assert!(err.contains(key), "{bad}: {err}");
    }
}

/// A periodic recovery point of `logical` in set `set`, `age_min` minutes old.
fn point(id: &str, logical: &str, set: &str, state: State, age_min: i64) -> Resource {
    Resource {
        logical: Some(logical.into()),
        reason: Some("recovery".into()),
        set: Some(set.into()),
        created: Some(NOW - age_min * 60),
        ..snap(id, 5, state, 0)
    }
}

#[test]
fn recovery_points_keep_a_count_and_an_age_and_always_the_newest() {
    let (deleted, kept) = run(vec![
        point("rp1", "data", "s1", State::Completed, 5),
        point("rp2", "data", "s2", State::Completed, 10),
        point("rp3", "data", "s3", State::Completed, 15),
        // Beyond the 3 newest, although young and of the newest generation.
        point("rp4", "data", "s4", State::Completed, 20),
        point("rp5", "data", "s5", State::Error, 1),
        point("rp6", "data", "s6", State::Pending, 0),
    ]);
    assert_eq!(deleted, vec!["rp4", "rp5"]);
    assert!(reason_of(&kept, "rp1").contains("newest completed"));
    assert!(reason_of(&kept, "rp3").contains("3 newest"));
    assert!(reason_of(&kept, "rp6").contains("pending"));

    // Older than the maximum age: gone, except the newest completed one, whatever its age.
    let (deleted, kept) = run(vec![
        point("old1", "data", "s1", State::Completed, 2 * 24 * 60),
        point("old2", "data", "s2", State::Completed, 3 * 24 * 60),
    ]);
    assert_eq!(deleted, vec!["old2"]);
    assert!(reason_of(&kept, "old1").contains("newest completed"));
}

#[test]
fn the_newest_complete_set_stays_whole() {
    // "wal" failed in the newest set: the older complete set s1 is what restore-latest would restore.
    let (deleted, kept) = run(vec![
        point("d1", "data", "s1", State::Completed, 3 * 24 * 60),
        point("w1", "wal", "s1", State::Completed, 3 * 24 * 60),
        point("d2", "data", "s2", State::Completed, 2 * 24 * 60),
        point("w2", "wal", "s2", State::Error, 2 * 24 * 60),
    ]);
    assert_eq!(deleted, vec!["w2"]);
    assert!(reason_of(&kept, "w1").contains("newest completed"));
    assert!(reason_of(&kept, "d1").contains("newest complete recovery point set"));
    assert!(reason_of(&kept, "d2").contains("newest completed"));
}

#[test]
fn a_recovery_point_a_restore_is_reading_stays() {
    let mut restoring = vol("vol-new", 6, State::Creating, 0);
    restoring.source_snapshot = Some("rp-old".into());
    let (deleted, kept) = run(vec![
        point("rp-new", "data", "s2", State::Completed, 1),
        point("rp-old", "data", "s1", State::Completed, 3 * 24 * 60),
        restoring,
    ]);
    assert!(deleted.is_empty(), "{deleted:?}");
    assert!(reason_of(&kept, "rp-old").contains("still creating"));
}
