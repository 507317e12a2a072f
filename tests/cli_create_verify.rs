//! `ringseed create` and `ringseed verify` as a user runs them: mapping files (the default,
//! with the SIGBUS guard installed by the command) and `--pread` give the same torrent and the
//! same verdicts.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

/// Deterministic, non-repeating bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn ringseed(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringseed"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run ringseed")
}

/// Runs ringseed, expects `code`, returns stdout.
fn expect_code(args: &[&str], cwd: &Path, code: i32) -> String {
    let out = ringseed(args, cwd);
    assert_eq!(
        out.status.code(),
        Some(code),
        "ringseed {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn mapped_and_pread_create_the_same_torrent_and_agree_on_verify() {
    // Files above and below the mmap threshold, pieces spanning them: the default (mapped)
    // and --pread give byte-identical torrents; both verify the data, and both report a
    // flipped byte as a bad piece with exit code 1.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("release");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("big.bin"), pattern(3 << 20 | 12_345, 1)).unwrap();
    fs::write(root.join("small.txt"), pattern(70_000, 2)).unwrap();
    fs::write(root.join("zz-big.bin"), pattern((2 << 20) + 1, 3)).unwrap();
    let cwd = dir.path();
    let create = ["create", "release", "--no-date", "--piece-size", "256KiB"];
    expect_code(&[&create[..], &["-o", "mapped.torrent"]].concat(), cwd, 0);
    expect_code(
        &[&create[..], &["-o", "pread.torrent", "--pread"]].concat(),
        cwd,
        0,
    );
    let mapped = fs::read(cwd.join("mapped.torrent")).unwrap();
    assert!(mapped == fs::read(cwd.join("pread.torrent")).unwrap());

    let verify = ["verify", "mapped.torrent", "--data", "."];
    expect_code(&verify, cwd, 0);
    expect_code(&[&verify[..], &["--pread"]].concat(), cwd, 0);

    let mut big = fs::read(root.join("big.bin")).unwrap();
    big[1 << 20] ^= 0x80;
    fs::write(root.join("big.bin"), big).unwrap();
    let mapped_report = expect_code(&verify, cwd, 1);
    let pread_report = expect_code(&[&verify[..], &["--pread"]].concat(), cwd, 1);
    let bad_lines = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("bad piece"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(bad_lines(&mapped_report).len(), 1, "{mapped_report}");
    assert!(
        mapped_report.contains("bad piece 4: HashMismatch"),
        "{mapped_report}"
    );
    assert_eq!(bad_lines(&mapped_report), bad_lines(&pread_report));
}
