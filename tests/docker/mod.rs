//! Driving this machine's Docker engine from a test: the `docker` CLI with errors that say what
//! failed, a guard that removes every container, network and image the test made (also when
//! an assertion panics), and the image build from `deploy/docker/Dockerfile`.
//!
//! The CLI rather than the engine's HTTP API: it is what a user types, what CI has, and its
//! error text is what the failure messages quote. [`pod`]: reaching one pod's containers;
//! [`plane`]: the control plane and its CA; [`identity`]: the steps about the mesh's identity.

pub mod identity;
pub mod mesh;
pub mod plane;
pub mod pod;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Run `docker ARGS`; stdout (trimmed) on success, an error naming the command and quoting
/// its stderr otherwise.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = run_docker(args)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `docker ARGS` whatever its exit status (for commands whose failure is the answer).
pub fn run_docker(args: &[&str]) -> Result<Output, String> {
    Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `docker` ({e}): the Docker CLI is not installed"))
}

/// Fail (never skip) when no Docker engine answers, saying so.
pub fn require_engine() {
    match run_docker(&["info", "--format", "{{.ServerVersion}}"]) {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "the Docker engine is not running or not reachable (`docker info` failed: {}); \
             these tests need it: start dockerd",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("{e}; these tests need a Docker engine"),
    }
}

/// Everything a test created on the engine, removed when dropped: containers first (they
/// hold the networks), then networks, then images (newest first: a build stage's image is
/// the parent chain of nothing else the test keeps).
#[derive(Default)]
pub struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
    images: Vec<String>,
}

impl Cleanup {
    pub fn container(&mut self, name: &str) {
        self.containers.push(name.to_string());
    }
    pub fn network(&mut self, name: &str) {
        self.networks.push(name.to_string());
    }
    pub fn image(&mut self, id: &str) {
        self.images.push(id.to_string());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut left = Vec::new();
        for name in self.containers.iter().rev() {
            if let Err(e) = docker(&["rm", "-f", "-v", name]) {
                if !e.contains("No such container") {
                    left.push(e);
                }
            }
        }
        for name in self.networks.iter().rev() {
            if let Err(e) = docker(&["network", "rm", name]) {
                left.push(e);
            }
        }
        for image in self.images.iter().rev() {
            if let Err(e) = docker(&["image", "rm", image]) {
                left.push(e);
            }
        }
        if !left.is_empty() {
            // A panic here would abort a test already unwinding; say it loudly instead.
            eprintln!(
                "docker cleanup left things behind:\n  {}",
                left.join("\n  ")
            );
        }
    }
}

/// The image the test built, and how big it is.
pub struct BuiltImage {
    pub tag: String,
    pub size_bytes: u64,
}

/// Make the local base images (`deploy/docker/base.sh`, a no-op when they are current), then
/// build `deploy/docker/Dockerfile` as `tag`. The final image and the build stage's own image
/// (the legacy builder keeps one per stage) go to `cleanup`; the base images stay: like a
/// pulled `debian` they are this machine's, made once.
pub fn build_image(repo: &Path, tag: &str, cleanup: &mut Cleanup) -> BuiltImage {
    let base = Command::new("bash")
        .arg(repo.join("deploy/docker/base.sh"))
        .current_dir(repo)
        .output()
        .expect("bash runs deploy/docker/base.sh");
    assert!(
        base.status.success(),
        "deploy/docker/base.sh failed ({}):\n{}{}",
        base.status,
        String::from_utf8_lossy(&base.stdout),
        String::from_utf8_lossy(&base.stderr)
    );
    let started = Instant::now();
    let dockerfile = repo.join("deploy/docker/Dockerfile");
    let dockerfile = dockerfile.to_str().expect("repository path is UTF-8");
    let context = repo.to_str().expect("repository path is UTF-8");
    let out = run_docker(&["build", "--force-rm", "-f", dockerfile, "-t", tag, context])
        .expect("docker build runs");
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    // Register the stage images before asserting, so a failed build still cleans up.
    if let Some(id) = build_stage_image(&log) {
        cleanup.image(&id);
    }
    assert!(
        out.status.success(),
        "docker build of deploy/docker/Dockerfile failed ({}):\n{log}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    cleanup.image(tag);
    let size_bytes = docker(&["image", "inspect", "-f", "{{.Size}}", tag])
        .expect("built image inspects")
        .parse()
        .expect("image size is a number");
    eprintln!(
        "built {tag}: {:.1} MB in {:.0} s",
        size_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    BuiltImage {
        tag: tag.to_string(),
        size_bytes,
    }
}

/// The build stage's last image in the legacy builder's output: the ` ---> ID` line just
/// before the step that starts the next stage (`FROM scratch`).
fn build_stage_image(log: &str) -> Option<String> {
    let mut last_id = None;
    for line in log.lines() {
        if let Some(id) = line.trim().strip_prefix("---> ") {
            if !id.contains(' ') {
                last_id = Some(id.to_string());
            }
        }
        if line.starts_with("Step ") && line.contains(": FROM scratch") {
            return last_id;
        }
    }
    None
}

/// Poll `check` every 100 ms until it returns `Some`, or panic after `timeout` with `what`
/// and the last state `check` reported.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(state) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {state}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build_stage_image;

    #[test]
    fn finds_the_build_stage_image_in_legacy_builder_output() {
        let log = "Step 1/12 : ARG BUILDER\nStep 2/12 : FROM trellis-builder AS build\n ---> 50211e65a1f3\n\
                   Step 7/12 : RUN deploy/docker/runtime-rootfs.sh\n ---> Running in 1c2d\n\
                   Removing intermediate container 1c2d\n ---> 7a8b9c0d1e2f\n\
                   Step 8/12 : FROM scratch\n ---> \nStep 9/12 : COPY --from=build\n";
        assert_eq!(build_stage_image(log).as_deref(), Some("7a8b9c0d1e2f"));
    }
}
