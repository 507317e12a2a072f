//! Bad input on the command line gets a clear answer: corrupt or hostile .torrent files make
//! `seed`, `verify`, `magnet` and `bench` exit non-zero with one line on stderr naming the
//! offending field, and touch nothing; `create` with a bad input or output path fails the
//! same way and leaves no partial file behind.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::*;

/// Every command here fails while reading its arguments; 20 s is slack for a loaded CI box.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `ringseed args` with a deadline (a hang is a failure, not a stuck test suite).
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(ringseed_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringseed");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "ringseed {args:?} still running after {COMMAND_TIMEOUT:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

/// Asserts the command failed with exactly one `ringseed: ...` line on stderr containing
/// every one of `needles`; returns that line.
fn assert_one_line_failure(out: &Output, args: &[&str], needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "ringseed {args:?} succeeded on bad input; stderr:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "ringseed {args:?} should give a one-line reason, got:\n{stderr}"
    );
    let line = lines[0];
    assert!(line.starts_with("ringseed: "), "not an error line: {line}");
    for needle in needles {
        assert!(
            line.contains(needle),
            "ringseed {args:?}: `{needle}` not named in: {line}"
        );
    }
    assert!(!line.contains("panicked"), "{line}");
    line.to_string()
}

/// Path, size and modification time of every entry under `dir`: "nothing was written".
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), meta.len(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}

/// An info dict for the 3,000,003-byte `rel` release of `make_data`, with parts replaced.
fn torrent(files: &str, pieces_len: usize, name: &str, piece_length: &str) -> Vec<u8> {
    let mut t = format!(
        "d4:infod5:files{files}4:name{}:{name}12:piece length{piece_length}6:pieces{pieces_len}:",
        name.len()
    )
    .into_bytes();
    t.extend(std::iter::repeat_n(b'x', pieces_len));
    t.extend_from_slice(b"ee");
    t
}

const ONE_FILE: &str = "ld6:lengthi3000000e4:pathl5:a.bineee";

/// The hostile torrent files: (file name, content, words the error line must contain).
fn hostile_torrents(good: &[u8]) -> Vec<(&'static str, Vec<u8>, Vec<&'static str>)> {
    let pl = "i262144e";
    vec![
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            vec!["bencode", "input ends"],
        ),
        ("empty", Vec::new(), vec!["empty"]),
        ("not-a-dict", b"li1ei2ee".to_vec(), vec!["not a dict"]),
        (
            "missing-info",
            b"d8:announce13:http://x/annce".to_vec(),
            vec!["`info`"],
        ),
        (
            "pieces-not-multiple-of-20",
            torrent(ONE_FILE, 21, "rel", pl),
            vec!["`pieces`", "multiple of 20"],
        ),
        (
            "pieces-too-few",
            torrent(ONE_FILE, 20, "rel", pl),
            vec!["`pieces`", "12 pieces"],
        ),
        (
            "negative-length",
            torrent("ld6:lengthi-5e4:pathl5:a.bineee", 0, "rel", pl),
            vec!["`files.length`", "-5"],
        ),
        (
            "zero-piece-length",
            torrent(ONE_FILE, 240, "rel", "i0e"),
            vec!["`piece length`"],
        ),
        (
            "dotdot-path",
            torrent("ld6:lengthi3e4:pathl2:..6:passwdeee", 20, "rel", pl),
            vec!["`files.path`", "`..`"],
        ),
        (
            "absolute-path",
            torrent("ld6:lengthi3e4:pathl0:3:etc6:passwdeee", 20, "rel", pl),
            vec!["`files.path`", "/etc/passwd"],
        ),
        (
            "absolute-name",
            torrent("ld6:lengthi3e4:pathl6:passwdeee", 20, "/etc", pl),
            vec!["`name`", "/etc"],
        ),
        (
            "huge-declared-string",
            b"d4:infod6:pieces99999999999:abcee".to_vec(),
            vec!["99999999999 bytes", "limit"],
        ),
    ]
}

/// A release `rel/` with one 3,000,003-byte file and its good torrent.
fn make_data(dir: &Path) -> (PathBuf, Vec<u8>) {
    let data = dir.join("data");
    fs::create_dir_all(data.join("rel")).unwrap();
    fs::write(data.join("rel/a.bin"), pseudo_random(3_000_003, 7)).unwrap();
    let good = dir.join("good.torrent");
    ringseed(&[
        "create",
        data.join("rel").to_str().unwrap(),
        "-o",
        good.to_str().unwrap(),
        "--piece-size",
        "256KiB",
    ]);
    let bytes = fs::read(&good).unwrap();
    fs::remove_file(&good).unwrap();
    (data, bytes)
}

#[test]
fn hostile_torrent_files_are_refused_by_every_command_with_one_line_naming_the_field() {
    // Each corrupt torrent makes seed, verify, magnet and bench fail with a one-line reason
    // naming the field, printing nothing on stdout and writing nothing anywhere.
    let dir = TestDir::new("cli-hostile");
    let (data, good) = make_data(dir.path());
    let cases = hostile_torrents(&good);
    let torrents = dir.path().join("torrents");
    fs::create_dir(&torrents).unwrap();
    for (name, bytes, _) in &cases {
        fs::write(torrents.join(format!("{name}.torrent")), bytes).unwrap();
    }
    let before = snapshot(dir.path());
    let port = free_port().to_string();
    for (name, _, needles) in &cases {
        let t = torrents.join(format!("{name}.torrent"));
        let t = t.to_str().unwrap();
        let d = data.to_str().unwrap();
        let listen = format!("127.0.0.1:{port}");
        let target = format!("127.0.0.1:{port}");
        let commands: [Vec<&str>; 4] = [
            vec!["seed", t, "--data", d, "--listen", &listen, "--no-announce"],
            vec!["verify", t, "--data", d],
            vec!["magnet", t],
            vec!["bench", t, "--target", &target, "--peers", "1"],
        ];
        for args in &commands {
            let out = run(args);
            let line = assert_one_line_failure(&out, args, needles);
            assert!(line.contains(name), "the file is not named: {line}");
            assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
        }
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a command wrote into the test dir"
    );
}

#[test]
fn endless_torrent_file_is_refused_at_the_size_limit() {
    // A "torrent" that never ends (/dev/zero) is refused after 64 MiB instead of being read
    // until memory runs out; the bounded run() turns a hang into a failure.
    for cmd in ["magnet", "verify"] {
        let mut args = vec![cmd, "/dev/zero"];
        if cmd == "verify" {
            args.extend(["--data", "/nonexistent"]);
        }
        let out = run(&args);
        assert_one_line_failure(&out, &args, &["/dev/zero", "larger than 64 MiB"]);
    }
}

#[test]
fn seed_with_a_directory_of_only_bad_torrents_exits_with_a_clear_message() {
    // A directory whose torrents are all corrupt: seed logs one refusal per file and exits
    // non-zero with a last line saying nothing could be loaded.
    let dir = TestDir::new("cli-allbad");
    let (data, good) = make_data(dir.path());
    let torrents = dir.path().join("torrents");
    fs::create_dir(&torrents).unwrap();
    let cases = hostile_torrents(&good);
    for (name, bytes, _) in &cases[..3] {
        fs::write(torrents.join(format!("{name}.torrent")), bytes).unwrap();
    }
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [
        "seed",
        torrents.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--listen",
        &listen,
        "--no-announce",
    ];
    let out = run(&args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (name, _, _) in &cases[..3] {
        assert!(
            stderr.contains(&format!(
                "refusing {}",
                torrents.join(format!("{name}.torrent")).display()
            )),
            "{name} not named:\n{stderr}"
        );
    }
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last, "ringseed: no torrent could be loaded: 3 of 3 refused (reasons above)",
        "{stderr}"
    );
}

#[test]
fn create_from_a_missing_path_fails_cleanly_without_output() {
    // `create` on a path that does not exist names it once and creates no torrent file.
    let dir = TestDir::new("cli-create-missing");
    let out_file = dir.path().join("out.torrent");
    let missing = dir.path().join("no-such-release");
    let args = [
        "create",
        missing.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
    ];
    let out = run(&args);
    let line = assert_one_line_failure(&out, &args, &["no-such-release", "No such file"]);
    assert_eq!(
        line.matches("No such file").count(),
        1,
        "cause repeated: {line}"
    );
    assert!(!out_file.exists());
    assert!(list_files(dir.path()).is_empty(), "something was written");
}

#[test]
fn create_to_an_unwritable_output_fails_cleanly_and_leaves_no_partial_file() {
    // Output where no file can be written (under a regular file, onto a directory, into
    // /proc — unwritable even for root): one-line error, and neither the target nor a
    // temporary file is left behind.
    let dir = TestDir::new("cli-create-unwritable");
    let data = dir.path().join("rel");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("a.bin"), pseudo_random(100_000, 3)).unwrap();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::write(work.join("plain-file"), b"x").unwrap();
    fs::create_dir(work.join("a-directory")).unwrap();
    let before = snapshot(&work);
    let targets = [
        (work.join("plain-file/x.torrent"), "Not a directory"),
        (work.join("a-directory"), "a-directory"),
        (PathBuf::from("/proc/ringseed-test.torrent"), "/proc"),
    ];
    for (target, needle) in &targets {
        let args = [
            "create",
            data.to_str().unwrap(),
            "-o",
            target.to_str().unwrap(),
        ];
        let out = run(&args);
        assert_one_line_failure(&out, &args, &[needle]);
        assert!(!Path::new("/proc/ringseed-test.torrent").exists());
    }
    assert_eq!(
        snapshot(&work),
        before,
        "a partial or temporary file was left"
    );
}
