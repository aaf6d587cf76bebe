//! docs/deploy.md's systemd unit, checked by `systemd-analyze verify`
//! where systemd is installed.

use crate::scratch;

/// The unit in docs/deploy.md: its ```ini block.
fn unit() -> String {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy.md"),
    )
    .unwrap();
    let start = doc
        .find("```ini\n")
        .expect("docs/deploy.md has an ini block")
        + 7;
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_owned()
}

fn verify(dir: &std::path::Path, name: &str, text: &str) -> (bool, String) {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    #[expect(
        clippy::disallowed_methods,
        reason = "the test runs systemd's own checker on the documented unit"
    )]
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify"])
        .arg(&file)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[test]
fn the_documented_unit_passes_systemd_analyze_verify() {
    let unit = unit();
    assert!(
        unit.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "{unit}"
    );
    assert!(unit.contains("Restart=on-failure"), "{unit}");
    let installed = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if !installed {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "systemd-analyze is not installed here: the unit's text was checked only"
        );
        return;
    }
    let dir = scratch("deploy");
    // The unit as documented, with this build's binary where it installs.
    let here = unit.replace("/usr/local/bin/botfleet", env!("CARGO_BIN_EXE_botfleet"));
    let (ok, said) = verify(&dir, "botfleet.service", &here);
    assert!(ok, "systemd-analyze verify: {said}\n{here}");
    // The check can fail: a binary that is not there.
    let (ok, said) = verify(
        &dir,
        "broken.service",
        &here.replace(env!("CARGO_BIN_EXE_botfleet"), "/nowhere/botfleet"),
    );
    assert!(!ok && said.contains("not executable"), "{said}");
}
