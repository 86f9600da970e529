//! Records the git revision the binary is built from, when it is known: from
//! `JARVIS_GIT_REVISION` (set by a deploy pipeline), else from `git rev-parse` when building
//! inside a checkout. Building outside a checkout simply leaves it out.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=JARVIS_GIT_REVISION");
    let revision = std::env::var("JARVIS_GIT_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| {
            let output = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            output
                .status
                .success()
                .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
                .filter(|r| !r.is_empty())
        });
    if let Some(revision) = revision {
        println!("cargo:rustc-env=JARVIS_GIT_REVISION={revision}");
    }
    // Rebuild when HEAD moves (checkout or commit).
    if let Ok(output) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        && output.status.success()
    {
        let git_dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/refs/heads");
    }
}
