//! `ringseed plan` and `ringseed sim` as a user runs them: printed math, written reports.

use std::process::Command;

fn ringseed(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringseed"))
        .args(args)
        .output()
        .expect("run ringseed")
}

#[test]
fn plan_prints_the_seeds_figures_step_by_step() {
    // The seed's table: 10 Gbps of swarm upload, 53.3 min at 10 Mbps, 7.1 h for a flash crowd.
    let out = ringseed(&[
        "plan",
        "--file-size",
        "4GB",
        "--piece-size",
        "2MB",
        "--peers",
        "10000",
        "--seeders",
        "2000",
        "--upload",
        "1Mbps",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "formula:",
        "assumption:",
        "10 Gbps",
        "53.333 min",
        "7.111 h",
        "2000",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[test]
fn plan_origin_counts_appliances() {
    // 100 GB to 10,000 peers in 2 h on 25 Gbps NICs: 56 boxes client-server, 6 with P2P.
    let out = ringseed(&[
        "plan",
        "--origin",
        "--file-size",
        "100GB",
        "--peers",
        "10000",
        "--deadline",
        "2h",
        "--nic",
        "25Gbps",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("result:     56\n"), "{text}");
    assert!(text.contains("result:     6\n"), "{text}");
}

#[test]
fn sim_writes_summary_series_and_plots() {
    // A two-peer scenario runs and leaves every report file behind.
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("pair.toml");
    std::fs::write(
        &scenario,
        r#"
        name = "pair"
        file_size = "20MB"
        piece_size = "1MB"
        sample_interval = "5s"
        [[class]]
        name = "seeder"
        count = 1
        seed = true
        upload = "8Mbps"
        download = "8Mbps"
        [[class]]
        name = "leecher"
        count = 1
        upload = "8Mbps"
        download = "80Mbps"
        "#,
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = ringseed(&[
        "sim",
        scenario.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("events/s") && text.contains("peak RSS"),
        "{text}"
    );
    for f in [
        "summary.txt",
        "summary.json",
        "timeseries.csv",
        "peers.csv",
        "completion_cdf.svg",
        "availability.svg",
        "upload_by_class.svg",
    ] {
        let body = std::fs::read_to_string(out_dir.join(f)).unwrap();
        assert!(!body.is_empty(), "{f} empty");
    }
}

#[test]
fn sim_refuses_a_scenario_with_a_typo() {
    // Unknown fields are errors, so a misspelt knob cannot silently run another experiment.
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("bad.toml");
    std::fs::write(
        &scenario,
        "name = \"x\"\nfile_size = \"1MB\"\npiece_sise = \"1MB\"\n",
    )
    .unwrap();
    let out = ringseed(&[
        "sim",
        scenario.to_str().unwrap(),
        "--out",
        "/tmp/unused-sim-out",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("not a usable scenario") && err.contains("piece_sise"),
        "{err}"
    );
}
