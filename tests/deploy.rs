//! The deploy files (Dockerfile, Helm chart, Terraform modules, region overlays) checked
//! by the real tools that install here (Helm's SDK for lint and template,
//! kubernetes-validate, checkov, hadolint, python-hcl2) and cross-checked against the
//! node: every region overlay passes `edge check-config`, ports, probes and the drain
//! timeout agree everywhere. See deploy/README.md.

mod support;

use std::process::Command;

#[test]
fn deploy_files_pass_their_tools_and_agree_with_the_node() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new("python3");
    cmd.current_dir(&root)
        .arg("deploy/check.py")
        .arg("--install")
        .arg("--edge")
        .arg(support::edge_bin());
    // Terraform does not install from the registries this suite uses; where it is on
    // the PATH, its formatter runs too.
    let terraform = Command::new("terraform").arg("version").output().is_ok();
    if !terraform {
        cmd.args(["--skip-tool", "terraform"]);
    }
    let out = cmd.output().expect("python3 runs deploy/check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "deploy/check.py failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
