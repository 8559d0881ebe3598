//! `cargo xtask devices`: brings the chosen device up (one real tensor op), and refuses unknown
//! or uncompiled device names with an error that lists what this build has.

use std::process::Command;

fn devices(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("devices")
        .args(args)
        .env_remove("BURN_DEVICE")
        .output()
        .expect("xtask runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn flex_comes_up_by_default_and_by_name() {
    for args in [&[][..], &["--device", "flex"][..]] {
        let (ok, text) = devices(args);
        assert!(ok, "{text}");
        assert!(text.contains("compiled devices: flex"), "{text}");
        assert!(text.contains("selected device: flex"), "{text}");
    }
}

#[test]
fn unknown_and_uncompiled_devices_are_errors() {
    let (ok, text) = devices(&["--device", "metal"]);
    assert!(!ok, "{text}");
    assert!(text.contains("unknown device `metal`"), "{text}");
    assert!(text.contains("compiled into this build: flex"), "{text}");
    // The default build compiles flex only; `cuda` is never built on these machines.
    let (ok, text) = devices(&["--device", "cuda"]);
    assert!(!ok, "{text}");
    assert!(text.contains("not compiled into this build"), "{text}");
    assert!(text.contains("`cuda`"), "{text}");
}
