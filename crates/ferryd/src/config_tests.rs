//! Config parsing and validation tests: the issue's minimum shape, defaults, and errors that name the key.

use super::*;

const MINIMAL: &str = r#"
[queue]
url = "https://sqs.us-east-1.amazonaws.com/123456789012/ferry-hooks"

[[groups]]
name = "db"                      # Auto Scaling group name
elastic_ip = "eipalloc-0123"     # optional: allocation id moved on launch

[[groups.volumes]]
name = "data"                    # logical name, stored in the ferry:volume tag
device = "/dev/sdf"
size_gib = 20                    # used for the first boot only
type = "gp3"
"#;

fn parse(text: &str) -> Result<Config, String> {
    let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

#[test]
fn the_documented_minimum_works_with_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.groups[0].name, "db");
    assert_eq!(c.groups[0].elastic_ip.as_deref(), Some("eipalloc-0123"));
    assert!(c.groups[0].require_managed_tag);
    assert_eq!(c.queue.visibility_timeout_secs, 120);
    assert!(!c.queue.delete_unmanaged);
    assert_eq!(c.daemon.log_format, LogFormat::Pretty);
    let spec = &c.group_specs()[0];
    assert_eq!(spec.volumes[0].device, "/dev/sdf");
    assert_eq!(spec.volumes[0].size_gib, 20);
    assert_eq!(spec.staying_holder_timeout, Duration::from_secs(600));
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (
            MINIMAL.replace("/dev/sdf", "/dev/foo"),
            "groups[0].volumes[0].device",
        ),
        (
            MINIMAL.replace("size_gib = 20", "size_gib = 0"),
            "groups[0].volumes[0].size_gib",
        ),
        (
            MINIMAL.replace("\"gp3\"", "\"gp9\""),
            "groups[0].volumes[0].type",
        ),
        (
            MINIMAL.replace("eipalloc-0123", "1.2.3.4"),
            "groups[0].elastic_ip",
        ),
        (
            MINIMAL.replace(
                "elastic_ip = \"eipalloc-0123\"",
                "elastic_ips = [\"eipalloc-1\", \"10.0.0.1\"]",
            ),
            "groups[0].elastic_ips[1]",
        ),
        (
            MINIMAL.replace(
                "elastic_ip = \"eipalloc-0123\"",
                "elastic_ips = [\"eipalloc-1\", \"eipalloc-1\"]",
            ),
            "groups[0].elastic_ips[1]",
        ),
        (
            MINIMAL.replace(
                "elastic_ip = \"eipalloc-0123\"",
                "elastic_ip = \"eipalloc-0123\"\nelastic_ips = [\"eipalloc-1\"]",
            ),
            "groups[0].elastic_ips",
        ),
        (
            MINIMAL.replace(
                "https://sqs.us-east-1.amazonaws.com/123456789012/ferry-hooks",
                "nope",
            ),
            "queue.url",
        ),
        (
            MINIMAL.replace("size_gib = 20", "size_gib = 20\nsize = 3"),
            "unknown field `size`",
        ),
        (
            MINIMAL.replace("size_gib = 20", "size_gib = \"big\""),
            "size_gib",
        ),
        (
            format!("{MINIMAL}\n[daemon]\nheartbeat_fraction = 2.0\n"),
            "daemon.heartbeat_fraction",
        ),
        (
            format!("{MINIMAL}\n[daemon]\nlog_format = \"xml\"\n"),
            "log_format",
        ),
    ];
    for (text, key) in cases {
        let err = parse(&text).unwrap_err();
        assert!(err.contains(key), "expected {key:?} in {err:?}");
    }
}

#[test]
fn duplicates_are_rejected() {
    let dup_group = format!(
        "{MINIMAL}\n{}",
        &MINIMAL[MINIMAL.find("[[groups]]").unwrap()..]
    );
    assert!(parse(&dup_group).unwrap_err().contains("groups[1].name"));
    let dup_device = format!(
        "{MINIMAL}\n[[groups.volumes]]\nname = \"wal\"\ndevice = \"/dev/sdf\"\nsize_gib = 5\n"
    );
    assert!(parse(&dup_device)
        .unwrap_err()
        .contains("groups[0].volumes[1].device"));
}

#[test]
fn missing_file_names_the_path() {
    let err = Config::read(Path::new("/nonexistent/ferry.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/ferry.toml"), "{err}");
}

#[test]
fn dead_az_keys_default_validate_and_name_the_key() {
    let c = parse(MINIMAL).unwrap();
    let g = &c.groups[0];
    assert_eq!(g.recovery_point_interval_secs, 300);
    assert_eq!(g.source_unreachable, SourceUnreachable::Wait);
    assert_eq!(g.restore_latest_after_secs, 600);
    assert_eq!(
        (c.gc.keep_recovery_points, c.gc.recovery_point_max_age_secs),
        (24, 86_400)
    );
    let spec = &c.group_specs()[0];
    assert!(!spec.restore_latest);
    assert_eq!(spec.recovery_point_interval, Duration::from_secs(300));

    let with = |keys: &str| {
        MINIMAL.replace(
            "[[groups.volumes]]",
            &format!("{keys}\n\n[[groups.volumes]]"),
        )
    };
    let c = parse(&with(
        "source_unreachable = \"restore-latest\"\nrestore_latest_after_secs = 30\nrecovery_point_interval_secs = 0",
    ))
    .unwrap();
    let spec = &c.group_specs()[0];
    assert!(spec.restore_latest);
    assert_eq!(spec.terminate_snapshot_bound(), Duration::from_secs(30));
    assert!(spec.recovery_point_interval.is_zero());

    let err = parse(&with("source_unreachable = \"restore\"")).unwrap_err();
    assert!(
        err.contains("source_unreachable") && err.contains("restore-latest"),
        "{err}"
    );
    let err = parse(&with("restore_latest_after_secs = 0")).unwrap_err();
    assert!(err.contains("groups[0].restore_latest_after_secs"), "{err}");
    let err = parse(&with("recovery_point_interval_secs = 9999999")).unwrap_err();
    assert!(
        err.contains("groups[0].recovery_point_interval_secs"),
        "{err}"
    );
    let err = parse(&format!("{MINIMAL}\n[gc]\nkeep_recovery_points = 0\n")).unwrap_err();
    assert!(err.contains("gc.keep_recovery_points"), "{err}");
}

#[test]
fn rate_limits_override_the_defaults_and_name_a_bad_action() {
    let c = parse(MINIMAL).unwrap();
    let all = c.aws.rate_limits();
    assert_eq!(
        all.get("ec2:AttachVolume").map(|l| (l.burst, l.per_sec)),
        Some((50, 5.0))
    );
    let text = format!(
        "{MINIMAL}\n[aws.rate_limits]\n\"ec2:AttachVolume\" = {{ burst = 20, per_sec = 2 }}\n"
    );
    let c = parse(&text).unwrap();
    let all = c.aws.rate_limits();
    assert_eq!(
        all.get("ec2:AttachVolume").map(|l| (l.burst, l.per_sec)),
        Some((20, 2.0))
    );
    assert_eq!(
        all.get("ec2:CreateTags").map(|l| (l.burst, l.per_sec)),
        Some((100, 10.0))
    );
    let bad = format!(
        "{MINIMAL}\n[aws.rate_limits]\n\"ec2:AttachVolumes\" = {{ burst = 1, per_sec = 1 }}\n"
    );
    let err = parse(&bad).unwrap_err();
    assert!(
        err.contains("aws.rate_limits.\"ec2:AttachVolumes\"") && err.contains("ec2:AttachVolume"),
        "{err}"
    );
    let zero = format!(
        "{MINIMAL}\n[aws.rate_limits]\n\"ec2:CreateTags\" = {{ burst = 0, per_sec = 1 }}\n"
    );
    assert!(parse(&zero).unwrap_err().contains("at least 1"));
}

#[test]
fn a_read_pace_may_refill_slower_than_once_a_second() {
    let c = parse(&format!(
        "{MINIMAL}\n[daemon]\nread_pace = {{ burst = 10, per_sec = 0.25 }}\n"
    ))
    .unwrap();
    assert_eq!(
        (c.daemon.read_pace.burst, c.daemon.read_pace.per_sec),
        (10, 0.25)
    );
    for bad in ["0", "0.001", "101"] {
        let err = parse(&format!(
            "{MINIMAL}\n[daemon]\nread_pace = {{ burst = 10, per_sec = {bad} }}\n"
        ))
        .unwrap_err();
        assert!(err.contains("daemon.read_pace"), "{bad}: {err}");
    }
}

#[test]
fn lifecycle_path_keys_default_parse_and_name_a_bad_value() {
    let spec = &parse(MINIMAL).unwrap().group_specs()[0];
    assert!(
        !spec.handover,
        "launch_before_terminate defaults to abandon"
    );
    assert!(spec.root_volume_recovery_point);
    let with = |keys: &str| {
        MINIMAL.replace(
            "[[groups.volumes]]",
            &format!("{keys}\n\n[[groups.volumes]]"),
        )
    };
    let c = parse(&with(
        "launch_before_terminate = \"handover\"\nroot_volume_recovery_point = false",
    ))
    .unwrap();
    let spec = &c.group_specs()[0];
    assert!(spec.handover && !spec.root_volume_recovery_point);
    assert_eq!(
        parse(&with("launch_before_terminate = \"abandon\""))
            .unwrap()
            .groups[0]
            .launch_before_terminate,
        LaunchBeforeTerminate::Abandon
    );
    let err = parse(&with("launch_before_terminate = \"sometimes\"")).unwrap_err();
    assert!(
        err.contains("launch_before_terminate") && err.contains("handover"),
        "{err}"
    );
}

#[test]
fn the_delete_role_must_be_a_role_arn() {
    let with = |role: &str| format!("{MINIMAL}\n[gc]\ndelete_role_arn = \"{role}\"\n");
    let ok = parse(&with("arn:aws:iam::123456789012:role/ferry/db-retention")).unwrap();
    assert_eq!(
        ok.gc.delete_role_arn.as_deref(),
        Some("arn:aws:iam::123456789012:role/ferry/db-retention")
    );
    assert_eq!(parse(MINIMAL).unwrap().gc.delete_role_arn, None);
    for bad in [
        "ferry-retention",
        "arn:aws:iam::123456789012:user/ops",
        "arn:aws:iam::1234:role/x",
        "arn:aws:sts::123456789012:role/x",
        "arn:aws:iam::123456789012:role/",
    ] {
        let err = parse(&with(bad)).unwrap_err();
        assert!(err.contains("gc.delete_role_arn"), "{bad}: {err}");
        assert!(err.contains(bad), "the error names the value: {err}");
    }
}

#[test]
fn startup_settle_defaults_to_five_seconds_and_is_bounded() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.daemon.startup_settle_secs, 5);
    let c = parse(&format!("{MINIMAL}\n[daemon]\nstartup_settle_secs = 0\n")).unwrap();
    assert_eq!(c.daemon.startup_settle_secs, 0);
    let err = parse(&format!("{MINIMAL}\n[daemon]\nstartup_settle_secs = 301\n")).unwrap_err();
    assert!(err.contains("daemon.startup_settle_secs"), "{err}");
}

#[test]
fn a_kms_key_needs_encryption_on() {
    let with = |extra: &str| parse(&format!("{MINIMAL}{extra}"));
    let err = with("kms_key_id = \"arn:aws:kms:us-east-1:123456789012:key/k\"\n").unwrap_err();
    assert!(
        err.contains("groups[0].volumes[0].kms_key_id") && err.contains("encrypted = true"),
        "{err}"
    );
    let ok = with("kms_key_id = \"arn:aws:kms:us-east-1:123456789012:key/k\"\nencrypted = true\n")
        .unwrap();
    assert_eq!(ok.groups[0].volumes[0].encrypted, Some(true));
}
