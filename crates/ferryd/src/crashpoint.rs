//! Test-only crash points: `FERRY_TEST_KILL_AFTER=<op>[#n]` makes ferryd SIGKILL itself right after the
//! n-th (default first) successful call of `<op>` (e.g. `ec2:CreateVolume`, `autoscaling:CompleteLifecycleAction`).
//! The crash-matrix tests use it to stop ferry exactly at each step boundary.
//!
//! Crash points exist only in a build with the `test-crashpoints` cargo feature of `ferryd`. No default
//! turns it on: ferryd's dev-dependency on itself does (crates/ferryd/Cargo.toml), so the `ferryd` that
//! `cargo test` builds for the end-to-end tests has them, and the one `cargo build [--release]` builds has
//! not. Without the feature the port wrappers (`wrappers.rs`) are not compiled at all, [`wrap`] hands the
//! ports back as they are, and a set `FERRY_TEST_KILL_AFTER` is ignored with a warning: no environment can
//! make a production ferryd kill itself mid-hook.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use ferry_snapshot::Ec2;
use ferry_state_machine::LifecycleActions;

#[cfg(feature = "test-crashpoints")]
mod wrappers;

/// The environment variable that arms a crash point.
pub const ENV: &str = "FERRY_TEST_KILL_AFTER";

/// The cargo feature that compiles crash points in.
pub const FEATURE: &str = "test-crashpoints";

/// Whether this build has crash points (the `test-crashpoints` feature).
pub const ENABLED: bool = cfg!(feature = "test-crashpoints");

/// An armed crash point.
#[derive(Debug)]
pub struct CrashPoint {
    op: String,
    remaining: AtomicU32,
}

impl CrashPoint {
    /// Reads `FERRY_TEST_KILL_AFTER`; `None` when unset or empty, and in a build without crash points
    /// (then with a warning when it is set).
    pub fn from_env() -> Option<Arc<CrashPoint>> {
        let spec = std::env::var(ENV).ok();
        Self::arm(spec.as_deref(), ENABLED).map(Arc::new)
    }

    /// The decision of [`CrashPoint::from_env`], on the variable's value `spec` and whether the build has
    /// crash points, `enabled`: disabled, a spec arms nothing and is logged as ignored.
    pub fn arm(spec: Option<&str>, enabled: bool) -> Option<CrashPoint> {
        let spec = spec.filter(|s| !s.is_empty())?;
        if !enabled {
            tracing::warn!(
                value = %spec,
                "{ENV} is set, but this ferryd was built without crash points (cargo feature {FEATURE}); ignored"
            );
            return None;
        }
        let (op, n) = match spec.split_once('#') {
            Some((op, n)) => (op, n.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        tracing::warn!(op = %op, nth = n, "test crash point armed: ferryd will SIGKILL itself");
        Some(CrashPoint {
            op: op.to_string(),
            remaining: AtomicU32::new(n),
        })
    }

    /// The operation this point kills after.
    pub fn op(&self) -> &str {
        &self.op
    }

    /// How many more successful calls of [`CrashPoint::op`] until the kill (the last one included).
    pub fn remaining(&self) -> u32 {
        self.remaining.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The EC2 and Auto Scaling ports behind `point`: each successful call passes the crash point. Without
/// `point`, or in a build without crash points, the ports as they are.
pub fn wrap<E, A>(
    ec2: E,
    asg: A,
    point: Option<Arc<CrashPoint>>,
) -> (Arc<dyn Ec2>, Arc<dyn LifecycleActions>)
where
    E: Ec2 + 'static,
    A: LifecycleActions + 'static,
{
    #[cfg(feature = "test-crashpoints")]
    if let Some(point) = point {
        return (
            Arc::new(wrappers::Crashing::new(ec2, point.clone())),
            Arc::new(wrappers::Crashing::new(asg, point)),
        );
    }
    // Without the feature no `CrashPoint` is ever made (`arm` refuses), so there is nothing to wrap with.
    #[cfg(not(feature = "test-crashpoints"))]
    drop(point);
    (Arc::new(ec2), Arc::new(asg))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The library's unit tests always build with the feature (the dev-dependency turns it on for every
    // test target of the package), so a `#[cfg(not(feature))]` test would never run. The no-feature
    // behaviour is instead tested through `arm(_, false)`, the exact function `from_env` calls with
    // `ENABLED`; that the feature is off in `cargo build` is the manifest's business, checked by
    // `only_the_tests_turn_crash_points_on` below.

    #[test]
    fn a_build_without_crash_points_ignores_the_variable() {
        for spec in ["ec2:CreateVolume", "ec2:AttachVolume#2", "anything"] {
            assert!(CrashPoint::arm(Some(spec), false).is_none(), "{spec}");
        }
    }

    #[test]
    fn unset_or_empty_arms_nothing() {
        assert!(CrashPoint::arm(None, true).is_none());
        assert!(CrashPoint::arm(Some(""), true).is_none());
    }

    #[test]
    fn a_spec_names_the_operation_and_the_nth_call() {
        let p = CrashPoint::arm(Some("ec2:CreateVolume#3"), true);
        let p = p.as_ref().map(|p| (p.op(), p.remaining()));
        assert_eq!(p, Some(("ec2:CreateVolume", 3)));
        let p = CrashPoint::arm(Some("autoscaling:CompleteLifecycleAction"), true);
        let p = p.as_ref().map(|p| (p.op(), p.remaining()));
        assert_eq!(p, Some(("autoscaling:CompleteLifecycleAction", 1)));
    }

    #[test]
    fn the_tests_have_crash_points() {
        // What `from_env` decides in this build: the dev-dependency turned the feature on.
        let armed = CrashPoint::arm(Some("ec2:CreateVolume"), ENABLED);
        assert!(armed.is_some(), "cargo test builds ferryd with {FEATURE}");
    }

    /// The feature is no default, and only a dev-dependency enables it: no normal or build dependency of
    /// any workspace member asks for it, so a `cargo build` of the workspace or of ferryd leaves it off.
    #[test]
    fn only_the_tests_turn_crash_points_on() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let read = |p: std::path::PathBuf| -> toml::Table {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let own = read(dir.join("Cargo.toml"));
        let features = own["features"].as_table().expect("[features]");
        assert!(features.contains_key(FEATURE));
        for (name, enables) in features {
            let enables = enables.as_array().expect("a feature is a list");
            assert!(
                !enables.iter().any(|f| f.as_str() == Some(FEATURE)),
                "feature {name} enables {FEATURE}"
            );
        }
        let dev = &own["dev-dependencies"]["ferryd"]["features"];
        assert!(dev
            .as_array()
            .expect("features")
            .iter()
            .any(|f| f.as_str() == Some(FEATURE)));

        let root = read(dir.join("../../Cargo.toml"));
        let members = root["workspace"]["members"].as_array().expect("members");
        for member in members {
            let member = member.as_str().expect("a member is a path");
            let manifest = read(dir.join("../..").join(member).join("Cargo.toml"));
            for section in ["dependencies", "build-dependencies"] {
                let dep = manifest.get(section).and_then(|d| d.get("ferryd"));
                assert!(
                    dep.is_none(),
                    "{member} [{section}] depends on ferryd: {dep:?}"
                );
            }
        }
    }
}
