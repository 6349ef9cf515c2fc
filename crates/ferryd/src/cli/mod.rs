//! The operator subcommands (`status`, `doctor`, `snapshot`, `gc`, `reset-slot`, and `completions` and `man`
//! for packaging): shared plumbing for them.
//!
//! Every command reads the same configuration as `ferryd run`, talks to AWS through the same clients and
//! ports, prints its result on stdout and its errors on stderr, and maps the outcome to an exit code
//! (docs/operations.md#exit-codes).

pub mod doctor;
mod doctor_iam;
mod doctor_iam_instance;
mod doctor_lease;
mod doctor_paths;
mod doctor_probe;
pub mod gc;
pub mod generate;

pub mod reset_slot;
pub mod snapshot_cmd;
pub mod status;
mod status_dr;
mod status_path;
mod status_slots;

use std::future::Future;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_snapshot::aws_ec2::AwsEc2;
use ferry_state_machine::aws::AwsLifecycleActions;

use crate::aws::Clients;
use crate::config::Config;

/// The AWS side of a command: the raw SDK clients (for calls no port covers) and the ports.
pub(crate) struct Aws {
    /// The SDK clients.
    pub clients: Clients,
    /// The EC2 ports.
    pub ec2: AwsEc2,
    /// The Auto Scaling port.
    pub asg: AwsLifecycleActions,
    /// The EC2 client retention deletes with: `[gc] delete_role_arn`'s, else `clients.ec2`.
    pub deletes: aws_sdk_ec2::Client,
}

impl Aws {
    /// Builds the clients from the `[aws]` settings and the standard chain, exactly as `ferryd run` does.
    pub async fn connect(config: &Config) -> Aws {
        let clients = crate::aws::clients(&config.aws).await;
        let deletes = match &config.gc.delete_role_arn {
            Some(role) => crate::aws::assumed_ec2(&config.aws, role, None).await,
            None => clients.ec2.clone(),
        };
        Aws {
            deletes,
            ec2: AwsEc2::new(clients.ec2.clone()),
            asg: AwsLifecycleActions::new(clients.autoscaling.clone()),
            clients,
        }
    }
}

/// Runs a command's future on a fresh runtime; a runtime that cannot start is a runtime error.
pub(crate) fn block_on(fut: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("ferryd: cannot start the async runtime: {e}");
            ExitCode::from(crate::exit::RUNTIME)
        }
    }
}

/// Prints `ferryd: <message>` on stderr and returns the runtime-error exit code.
pub(crate) fn runtime_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("ferryd: {message}");
    ExitCode::from(crate::exit::RUNTIME)
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A short human age: `42s`, `7m`, `5h`, `3d`.
pub(crate) fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7_199 => format!("{}m", s / 60),
        7_200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Renders rows as a left-aligned table with a header line; columns are two spaces apart.
pub(crate) fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Prints a block of text on stdout as is.
#[allow(clippy::print_stdout)]
pub(crate) fn print_out(text: &str) {
    print!("{text}");
}

/// Prints one line on stdout.
#[allow(clippy::print_stdout)]
pub(crate) fn println_out(line: &str) {
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short_and_never_negative() {
        for (secs, want) in [
            (-5, "0s"),
            (42, "42s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 86_400, "3d"),
        ] {
            assert_eq!(human_age(secs), want, "{secs}");
        }
    }

    #[test]
    fn tables_align_columns() {
        let t = render_table(
            &["A", "LONGER"],
            &[
                vec!["x".into(), "1".into()],
                vec!["wide-cell".into(), "2".into()],
            ],
        );
        assert_eq!(t, "A          LONGER\nx          1\nwide-cell  2\n");
    }
}
